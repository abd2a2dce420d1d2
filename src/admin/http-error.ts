/** An HTTP error with the status and the one-line message the client gets as JSON. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** e.g. the `allow` header a 405 must carry (RFC 9110 15.5.6) */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/** A 405 for `method` on `path`, naming the methods the path takes. */
export function methodNotAllowed(method: string, path: string, allowed: readonly string[]): HttpError {
  return new HttpError(405, `${method} is not supported on ${path} (it takes ${allowed.join(', ')})`, { allow: allowed.join(', ') });
}
