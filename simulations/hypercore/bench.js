// Hypercore replication between two node processes over TCP on 127.0.0.1, measured the way
// syncbench measures cophr's bulk sync (simulations/src/bin/syncbench.rs runs it in the
// same run, beside cophr's bulk phase).
//
//   node bench.js [--blocks N] [--block-bytes B] [--seed S] [--inflight R] [--dir D]
//
// spawns two processes running this file:
//   writer  creates a Hypercore in a temporary directory, appends N blocks of B bytes
//           (deterministic content from the seed; not timed), listens on an ephemeral
//           port of 127.0.0.1 and prints {"port", "key"} when ready; every connection is
//           replicated (core.replicate(false), Noise-encrypted, over the socket, with
//           TCP_NODELAY on both ends);
//   reader  opens a Hypercore with the writer's key in its own temporary directory, then,
//           timed: connects, replicates (core.replicate(true)), downloads blocks 0..N
//           (core.download({ start: 0, end: N }).done(): every block verified against the
//           signed Merkle tree and written to the reader's storage), and prints the result.
// and prints one JSON line: blocks, seconds, blocks_per_s, bytes_per_s and more.
//
// --inflight R sets Hypercore's inflightRange to [R, R] on both sides (requests a peer keeps
// in flight; by default [16, 512], of which 48 are used over plain TCP). Without it,
// Hypercore's defaults.
//
// The two processes' storage goes in temporary directories under D (default the system's
// temporary directory), both removed at the end. Install the pinned hypercore first:
//   npm ci --prefix simulations/hypercore

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Hypercore from 'hypercore'

const SCRIPT = fileURLToPath(import.meta.url)
const HYPERCORE_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/hypercore/package.json', import.meta.url), 'utf8')
).version
// Blocks per append while the writer builds its core (one signed tree update per append).
const APPEND_BATCH = 1000
// How long any one step may take before the harness gives up.
const STEP_TIMEOUT_MS = 30 * 60 * 1000

function parseArgs(argv) {
  const args = { mode: 'run', blocks: 10000, blockBytes: 1024, seed: 5, port: 0, key: '', inflight: 0, dir: tmpdir() }
  let i = 0
  if (argv[0] === 'writer' || argv[0] === 'reader') args.mode = argv[i++]
  for (; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[++i]
    if (value === undefined) fail(`${flag} needs a value`)
    switch (flag) {
      case '--blocks':
        args.blocks = positiveInt(flag, value)
        break
      case '--block-bytes':
        args.blockBytes = positiveInt(flag, value)
        break
      case '--seed':
        args.seed = positiveInt(flag, value)
        break
      case '--port':
        args.port = positiveInt(flag, value)
        break
      case '--key':
        args.key = value
        break
      case '--dir':
        args.dir = value
        break
      case '--inflight':
        args.inflight = positiveInt(flag, value)
        break
      default:
        fail(`unknown argument ${flag}`)
    }
  }
  return args
}

function positiveInt(flag, value) {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) fail(`${flag} must be a non-negative integer`)
  return n
}

function fail(message) {
  process.stderr.write(`bench.js: ${message}\n`)
  process.exit(2)
}

// Block `index`'s content: `bytes` bytes from a xorshift32 stream seeded by (seed, index),
// so the writer and the reader each compute any block on their own.
function blockContent(seed, index, bytes) {
  const out = Buffer.alloc(bytes)
  let x = (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0
  if (x === 0) x = 0x6d2b79f5
  for (let off = 0; off < bytes; off += 4) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    if (off + 4 <= bytes) out.writeUInt32LE(x, off)
    else for (let k = 0; off + k < bytes; k++) out[off + k] = (x >>> (8 * k)) & 0xff
  }
  return out
}

function emit(value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

// Peak resident memory of this process, KiB.
function peakKib() {
  return process.resourceUsage().maxRSS
}

// Options both sides open their Hypercore with.
function coreOptions(args) {
  return args.inflight > 0 ? { inflightRange: [args.inflight, args.inflight] } : {}
}

// CPU seconds (user + system) this process has used since `from` (process.cpuUsage()).
function cpuSeconds(from) {
  const d = process.cpuUsage(from)
  return (d.user + d.system) / 1e6
}

async function writer(args) {
  const dir = mkdtempSync(join(args.dir, 'hypercore-writer-'))
  const core = new Hypercore(dir, coreOptions(args))
  await core.ready()
  const t = process.hrtime.bigint()
  for (let start = 0; start < args.blocks; start += APPEND_BATCH) {
    const batch = []
    for (let i = start; i < Math.min(args.blocks, start + APPEND_BATCH); i++) {
      batch.push(blockContent(args.seed, i, args.blockBytes))
    }
    await core.append(batch)
  }
  const appendSeconds = Number(process.hrtime.bigint() - t) / 1e9
  if (core.length !== args.blocks) throw new Error(`the writer holds ${core.length} blocks`)

  const sockets = new Set()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    const stream = core.replicate(false)
    stream.on('error', () => {})
    socket.pipe(stream).pipe(socket)
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const serving = process.cpuUsage()
  emit({
    port: server.address().port,
    key: core.key.toString('hex'),
    append_seconds: appendSeconds,
    byte_length: core.byteLength
  })

  // Serve until told to quit (a line on stdin, or stdin closing).
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() === 'quit') break
  }
  const cpu = cpuSeconds(serving)
  server.close()
  for (const s of sockets) s.destroy()
  const peak = peakKib()
  await core.close()
  rmSync(dir, { recursive: true, force: true })
  emit({ peak_kib: peak, serving_cpu_seconds: cpu })
}

async function reader(args) {
  const dir = mkdtempSync(join(args.dir, 'hypercore-reader-'))
  const core = new Hypercore(dir, Buffer.from(args.key, 'hex'), coreOptions(args))
  await core.ready()
  try {
    // Timed: connect, the Noise handshake, the upgrade to the writer's signed length, and
    // every block verified and stored.
    const t = process.hrtime.bigint()
    const cpu = process.cpuUsage()
    const socket = net.connect(args.port, '127.0.0.1')
    socket.setNoDelay(true)
    const stream = core.replicate(true)
    const broken = new Promise((resolve, reject) => {
      socket.on('error', reject)
      stream.on('error', reject)
      socket.on('close', () => reject(new Error('the connection closed before the download')))
    })
    socket.pipe(stream).pipe(socket)
    const range = core.download({ start: 0, end: args.blocks })
    await Promise.race([range.done(), broken])
    const seconds = Number(process.hrtime.bigint() - t) / 1e9
    const cpuUsed = cpuSeconds(cpu)

    // Not timed: the reader holds every block, and their content is the writer's.
    if (core.contiguousLength < args.blocks || !(await core.has(0, args.blocks))) {
      throw new Error(`the reader holds ${core.contiguousLength} of ${args.blocks} blocks`)
    }
    const step = Math.max(1, Math.floor(args.blocks / 1000))
    let checked = 0
    for (let i = 0; i < args.blocks; i += step) {
      const got = await core.get(i, { wait: false })
      if (!got || !got.equals(blockContent(args.seed, i, args.blockBytes))) {
        throw new Error(`block ${i} differs from the writer's`)
      }
      checked++
    }
    const bytes = args.blocks * args.blockBytes
    const result = {
      blocks: args.blocks,
      block_bytes: args.blockBytes,
      seconds,
      blocks_per_s: args.blocks / seconds,
      bytes_per_s: bytes / seconds,
      held: core.contiguousLength,
      cpu_seconds: cpuUsed,
      checked,
      peak_kib: peakKib()
    }
    socket.destroy()
    await core.close()
    emit(result)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// Spawns this file as `mode`; resolves the child and an async reader of its JSON lines.
function child(mode, argv) {
  const proc = spawn(process.execPath, [SCRIPT, mode, ...argv], {
    stdio: [mode === 'writer' ? 'pipe' : 'ignore', 'pipe', 'inherit']
  })
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const next = async () => {
    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the ${mode} did not answer in time`)), STEP_TIMEOUT_MS)
    })
    try {
      const r = await Promise.race([lines.next(), timeout])
      if (r.done) {
        const { code, signal } = await exited
        throw new Error(`the ${mode} process ended (code ${code}, signal ${signal})`)
      }
      return JSON.parse(r.value)
    } finally {
      clearTimeout(timer)
    }
  }
  return { proc, next, exited }
}

async function run(args) {
  const common = [
    '--blocks',
    String(args.blocks),
    '--block-bytes',
    String(args.blockBytes),
    '--seed',
    String(args.seed),
    '--inflight',
    String(args.inflight),
    '--dir',
    args.dir
  ]
  const w = child('writer', common)
  try {
    const ready = await w.next()
    const r = child('reader', [...common, '--port', String(ready.port), '--key', ready.key])
    const result = await r.next()
    await r.exited
    w.proc.stdin.end('quit\n')
    const writerEnd = await w.next()
    await w.exited
    emit({
      hypercore: HYPERCORE_VERSION,
      node: process.version,
      inflight: args.inflight || null,
      ...result,
      reader_cpu_seconds: result.cpu_seconds,
      writer_cpu_seconds: writerEnd.serving_cpu_seconds,
      writer_append_seconds: ready.append_seconds,
      writer_peak_kib: writerEnd.peak_kib,
      reader_peak_kib: result.peak_kib
    })
  } finally {
    if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill()
  }
}

const args = parseArgs(process.argv.slice(2))
const main = args.mode === 'writer' ? writer : args.mode === 'reader' ? reader : run
main(args).catch((err) => {
  process.stderr.write(`bench.js ${args.mode}: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
