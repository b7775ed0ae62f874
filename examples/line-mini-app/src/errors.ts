/** An error the API answers with: an HTTP status, a stable code for programs and a message for people. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}
