// Package rawsys makes the data plane's read(2), write(2) and epoll_wait(2)
// calls as raw system calls (Linux only).
//
// A raw call skips the runtime's system-call bookkeeping. Only EpollBlock
// blocks (see it: an event loop's wait, which keeps its P on purpose); the
// others cannot (every descriptor is non-blocking), but
// on the paravirtualised machines measured a loopback write takes 10-20 µs,
// and a goroutine that stays that long in an ordinary system call has its P
// taken back by the runtime's monitor thread (sysmon), which then polls
// every 20 µs: 6-7 % of bench/relay's CPU samples, 0.7 % with raw calls
// (docs/benchmarks.md, "What a Go process can reach"). The price is that a
// raw call cannot be preempted, so callers bound the size of what they
// write in one call.
//
// Used by pkg/mysql (PacketIO's writes), pkg/proxy/evloop and bench/relay.
package rawsys
