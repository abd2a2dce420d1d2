import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// The rules of ../shared/DESIGN.md's layout, checked on the TypeScript sources (this file runs from
// dist/test/unit/architecture): a layer that may not know another cannot start to by accident.
const SRC = fileURLToPath(new URL('../../../../src/', import.meta.url));

/** layers that do no I/O of their own: no sockets, no disk, no store or network library */
const PURE = ['codec', 'collections', 'topic', 'session', 'hooks', 'protocol'];
const IO_MODULES = /^(node:)?(net|tls|http|https|http2|dgram|fs|fs\/promises|child_process|worker_threads|cluster)$|^(ws|lmdb|ioredis)$/;

/** which other layers of src/ each layer may import from (its own files always) */
const ALLOWED: Record<string, string[]> = {
  codec: [],
  collections: [],
  topic: ['codec', 'collections'],
  session: ['codec', 'topic', 'collections'],
  hooks: ['codec', 'topic', 'session'],
  protocol: ['codec', 'topic', 'session', 'hooks', 'collections'],
  transport: ['codec', 'protocol', 'collections'],
  persistence: ['codec', 'topic', 'session', 'collections'],
};

interface Import {
  file: string;
  target: string;
}

function sourcesOf(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourcesOf(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** every import of a source file: `import`, `export ... from` and `import()`, type-only ones included */
function importsOf(file: string): Import[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => ({ file: relative(SRC, file), target: f.fileName }));
}

/** the layer of a path under src/ (its first folder), or undefined for the files at its top */
function layerOf(pathUnderSrc: string): string | undefined {
  const parts = pathUnderSrc.split(sep);
  return parts.length > 1 ? parts[0] : undefined;
}

const files = sourcesOf(SRC);
const all = files.flatMap(importsOf);

/** the layer an import reaches, or the package name for one outside src/ */
function reached(i: Import): { layer: string | undefined; module: string | undefined } {
  if (!i.target.startsWith('.')) return { layer: undefined, module: i.target };
  const target = relative(SRC, resolve(dirname(join(SRC, i.file)), i.target));
  return { layer: layerOf(target) ?? target, module: undefined };
}

describe('architecture: the layers import only what DESIGN.md lets them', () => {
  test('the sources are found and their imports read (the checks below are not vacuous)', () => {
    assert.ok(all.length > 300, `only ${all.length} imports found under ${SRC}`);
    for (const layer of Object.keys(ALLOWED)) assert.ok(files.some((f) => layerOf(relative(SRC, f)) === layer), `no source in ${layer}/`);
  });

  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    test(allowed.length === 0 ? `${layer}/ imports from no other layer` : `${layer}/ imports from ${allowed.join(', ')} only`, () => {
      const wrong = all
        .filter((i) => layerOf(i.file) === layer)
        .filter((i) => {
          const to = reached(i).layer;
          return to !== undefined && to !== layer && !allowed.includes(to);
        })
        .map((i) => `${i.file} imports ${i.target}`);
      assert.deepEqual(wrong, []);
    });
  }

  test(`${PURE.join(', ')} do no I/O: no sockets, files or store and network libraries`, () => {
    const wrong = all
      .filter((i) => PURE.includes(layerOf(i.file) ?? ''))
      .filter((i) => IO_MODULES.test(reached(i).module ?? ''))
      .map((i) => `${i.file} imports ${i.target}`);
    assert.deepEqual(wrong, []);
  });

  test('only the composition root and the embedding API import app.ts', () => {
    const wrong = all
      .filter((i) => reached(i).layer === 'app.js')
      .filter((i) => !['index.ts', join('cli', 'main.ts')].includes(i.file))
      .map((i) => `${i.file} imports ${i.target}`);
    assert.deepEqual(wrong, []);
  });
});
