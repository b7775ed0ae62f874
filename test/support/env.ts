// Loaded by jest before every test file.
process.env.NODE_ENV = 'test';
process.env.LOG_LEVEL ??= 'silent';
