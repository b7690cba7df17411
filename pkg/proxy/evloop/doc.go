// Package evloop runs sessions as coroutines of event loops, so that a
// session written as ordinary blocking code waits for its sockets the way
// HAProxy does: one epoll loop per CPU reads what is ready and switches
// straight into the session that waits for it, with no goroutine parked in
// Go's netpoller, no run queue and no thread woken per packet.
//
// Why: docs/benchmarks.md ("What a Go process can reach") measured a relay
// written this way at 0.93-1.00x HAProxy's CPU per query, where a goroutine
// per connection costs 1.31-1.44x.
//
// The pieces:
//   - Group: the loops, one goroutine each. A Task (a coroutine, iter.Pull)
//     is started on a loop and stays on it. A loop with nothing ready
//     blocks in epoll_wait while GOMAXPROCS leaves a P beyond the loops',
//     else parks in Go's netpoller (Loop.setWait).
//   - Conn: a TCP connection whose Read and Write, while the Task that owns
//     it has attached it, are raw system calls that yield to the loop on
//     EAGAIN and resume when epoll reports the socket ready (edge-triggered,
//     registered once). Its first registration takes the socket out of Go's
//     runtime (a descriptor of its own; the net.TCPConn is closed), so that
//     its packets wake no thread of the runtime's netpoller. Released or
//     detached, another goroutine may use it (under whatever lock its owner
//     keeps): a call tries the descriptor first, and one that must wait
//     makes a net.TCPConn of the socket again until the next attach.
//     Deadlines and Close keep net.Conn's meaning in every state, and wake
//     a Task that waits in the loop.
//   - Detach and Reattach: a Task that must wait for anything but its own
//     sockets (a lock, a dial, another goroutine) detaches first and goes on
//     on a goroutine of its own, so that the loop's other Tasks do not wait
//     with it.
//
// Only Linux has loops; elsewhere NewGroup fails and callers keep goroutines.
package evloop
