/**
 * The error base of podnet: every error a user can meet has a stable `code` (for scripts and
 * tests to match on) and a message that says what to do about it. Lower-level failures are
 * kept as `cause` rather than flattened into the text.
 */
export class PodnetError extends Error {
  override readonly name: string = 'PodnetError';
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A short text for any thrown value, for logs and error details. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
