// Aedes on a TCP port, for side-by-side benchmarks: node dist/bench/aedes-server.js PORT
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 1883);
const aedes = await Aedes.createBroker();
const server = createServer(aedes.handle);
server.listen(port, '127.0.0.1', () => console.log(`aedes listening on ${port}`));
process.on('SIGTERM', () => server.close(() => aedes.close(() => process.exit(0))));
