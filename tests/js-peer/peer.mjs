// A js-libp2p node (TCP, noise, yamux, identify, ping) that dials the cophr node at the
// multiaddr given as the only argument (ending in /p2p/<peer id>), pings it, waits for the
// identify exchange, and prints one JSON line: the round trip, the peer's agent and
// protocol version, and the protocols it announced. Exits non-zero on any failure or after
// 20 seconds.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'

// Node 20 (Debian's, and this machine's) lacks Promise.withResolvers (Node 22), which
// js-libp2p's dependencies use: the standard one-liner.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const target = process.argv[2]
if (!target) {
  console.error('usage: node peer.mjs /ip4/127.0.0.1/tcp/PORT/p2p/PEER')
  process.exit(2)
}
const timer = setTimeout(() => {
  console.error('timed out')
  process.exit(3)
}, 20000)

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})
await node.start()
const ma = multiaddr(target)
const identified = new Promise((resolve) => {
  node.addEventListener('peer:identify', (evt) => resolve(evt.detail))
})
const rtt = await node.services.ping.ping(ma)
const id = await identified
console.log(JSON.stringify({
  rtt,
  peer: id.peerId.toString(),
  agentVersion: id.agentVersion,
  protocolVersion: id.protocolVersion,
  protocols: id.protocols
}))
clearTimeout(timer)
await node.stop()
process.exit(0)
