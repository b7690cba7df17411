// Package mysql is Switchyard's MySQL wire-protocol codec.
//
// PacketIO reads and writes packets on one connection: sequence ids,
// payloads of 16 MiB and more split into and joined from several physical
// packets, TLS upgrade after an SSLRequest, and the compressed protocol
// (zlib or zstd) after authentication. Its buffers come from a pool while
// data flows and go back before an idle session waits, and it can forward a
// packet, or a run of buffered rows, to another PacketIO without decoding
// it. On Linux its writes to a TCP socket are raw write(2) calls made from
// inside the socket's RawConn (syswrite_linux.go), which keeps the runtime
// from handing the writer's P to another thread during a slow loopback
// write. The rest of the package encodes and decodes the packets the proxy
// must understand: the handshake, OK, ERR and EOF packets, length-encoded
// values and the PROXY protocol v2 header. The proxy writes this codec
// itself because the usual Go MySQL libraries cannot be used here; it
// depends on nothing but the standard library and a zstd implementation.
package mysql
