#!/usr/bin/env node
'use strict';
// Mounted layers are served by an NBD server inside this process, which does its file
// I/O on libuv's threadpool; fs calls into a mounted tree hold threadpool threads while the
// kernel waits on that server. With libuv's default of 4 threads a large layer apply can
// park all four in ext4 (seen importing a Debian root filesystem): a deadlock. Read by
// libuv when the pool first starts, so it must be set before any asynchronous fs call.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '64';
require('../dist/src/cli/main.js').main(process.argv.slice(2));
