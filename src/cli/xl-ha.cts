#!/usr/bin/env node
/**
 * The `xl-ha` command. CommonJS on purpose: libuv sizes its thread pool from
 * UV_THREADPOOL_SIZE when the pool first runs, and an ES module entry is itself read through
 * the pool, before any of its code could set the variable. This file is read synchronously,
 * sets it, and only then loads the ES modules.
 *
 * On the xen backend each protected domain holds a pool thread for as long as its
 * xc_domain_save runs, and each replica one for its restore; suspend and resume calls need
 * free ones besides. Node's default of 4 would stall a daemon with more than two of them.
 */
const DEFAULT_THREAD_POOL = 64;
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(DEFAULT_THREAD_POOL);
void import('./main.js').then((m) => m.runCli(process.argv.slice(2)));
