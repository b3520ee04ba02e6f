#!/usr/bin/env -S node --max-semi-space-size=64
/**
 * The `xl-ha` command. CommonJS on purpose: libuv sizes its thread pool from
 * UV_THREADPOOL_SIZE when the pool first runs, and an ES module entry is itself read through
 * the pool, before any of its code could set the variable. This file is read synchronously,
 * sets it, and only then loads the ES modules.
 *
 * On the xen backend each protected domain holds a pool thread for as long as its
 * xc_domain_save runs, and each replica one for its restore; suspend and resume calls need
 * free ones besides. Node's default of 4 would stall a daemon with more than two of them.
 *
 * The `#!` line carries the V8 options the daemon runs with, and it is their one definition:
 * install.sh's wrapper and the sim hosts of the demo, the bench and the tests
 * (src/demo/hosts.ts `shippedNodeFlags`) read them from this line. They cannot be set from
 * here: V8 sizes the young generation when the isolate is created, and
 * `v8.setFlagsFromString('--max-semi-space-size=64')` this early still leaves it at Node 20's
 * 16 MiB semi-spaces (measured: new space stays 32 MiB, against 128 MiB with the option on the
 * command line); re-executing node would make the daemon two processes, and a SIGKILL of the
 * one systemd or a test knows would leave the other running.
 *
 * --max-semi-space-size=64: a young generation large enough that scavenges stay rare and
 * short; each one stops the event loop, and one that lands inside a checkpoint lengthens the
 * guest's pause. The bench has always run its hosts with it, so the installed command now does
 * too; what it changes, and what else stops the loop, is in docs/benchmark.md.
 */
const DEFAULT_THREAD_POOL = 64;
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(DEFAULT_THREAD_POOL);
void import('./main.js').then((m) => m.runCli(process.argv.slice(2)));
