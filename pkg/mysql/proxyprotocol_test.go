package mysql

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxyTestSig is the v2 signature, spelled out independently of the code.
var proxyTestSig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyTestHeader builds a header by hand: signature, version/command,
// family/transport, big-endian length and body.
func proxyTestHeader(verCmd, famTrans byte, body []byte) []byte {
	b := append(bytes.Clone(proxyTestSig), verCmd, famTrans)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// A v4 TCP header written byte by byte from the spec: 192.168.1.10:51234 →
// 10.0.0.5:3306.
func TestProxyHeaderV2SpecVector(t *testing.T) {
	wire := []byte{
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
		0x21,       // version 2, command PROXY
		0x11,       // AF_INET, STREAM
		0x00, 0x0C, // 12 bytes of addresses follow
		192, 168, 1, 10, // source address
		10, 0, 0, 5, // destination address
		0xC8, 0x22, // source port 51234
		0x0C, 0xEA, // destination port 3306
	}
	h, err := ReadProxyHeaderV2(bytes.NewReader(wire))
	require.NoError(t, err)
	require.Equal(t, ProxyCommandProxy, h.Command)
	require.Equal(t, netip.MustParseAddrPort("192.168.1.10:51234"), h.Src)
	require.Equal(t, netip.MustParseAddrPort("10.0.0.5:3306"), h.Dst)

	require.Equal(t, wire, AppendProxyHeaderV2(nil, h.Src, h.Dst))
}

func TestProxyHeaderV2RoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		famTrans byte
		// want* differ from src/dst when an IPv4-mapped address is unmapped.
		wantSrc, wantDst string
	}{
		{"v4", "203.0.113.7:40000", "10.1.2.3:4000", 0x11, "", ""},
		{"v6", "[2001:db8::1]:40000", "[fd00::3]:4000", 0x21, "", ""},
		{"v4 to v6", "203.0.113.7:40000", "[fd00::3]:4000", 0x21, "", ""},
		{"v6 to v4", "[2001:db8::1]:1", "10.1.2.3:65535", 0x21, "", ""},
		{"4-in-6 both", "[::ffff:203.0.113.7]:40000", "[::ffff:10.1.2.3]:4000", 0x11, "203.0.113.7:40000", "10.1.2.3:4000"},
		{"zone dropped", "[fe80::1%eth0]:5", "[fe80::2]:6", 0x21, "[fe80::1]:5", ""},
		{"zero ports", "0.0.0.0:0", "255.255.255.255:0", 0x11, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(tt.src), netip.MustParseAddrPort(tt.dst)
			prefix := []byte("keep")
			b := AppendProxyHeaderV2(prefix, src, dst)
			require.Equal(t, prefix, b[:4])
			b = b[4:]
			require.Equal(t, tt.famTrans, b[13])

			// Trailing bytes belong to MySQL and must stay unread.
			r := bytes.NewReader(append(bytes.Clone(b), "next"...))
			h, err := ReadProxyHeaderV2(r)
			require.NoError(t, err)
			require.Equal(t, 4, r.Len())
			require.Equal(t, ProxyCommandProxy, h.Command)
			wantSrc, wantDst := src, dst
			if tt.wantSrc != "" {
				wantSrc = netip.MustParseAddrPort(tt.wantSrc)
			}
			if tt.wantDst != "" {
				wantDst = netip.MustParseAddrPort(tt.wantDst)
			}
			require.Equal(t, wantSrc, h.Src)
			require.Equal(t, wantDst, h.Dst)
		})
	}
}

func TestProxyHeaderV2MixedIsMapped(t *testing.T) {
	b := AppendProxyHeaderV2(nil, netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("[2001:db8::9]:3306"))
	require.Len(t, b, 16+36)
	require.Equal(t, []byte{0x21, 0x21, 0, 36}, b[12:16])
	mapped := netip.MustParseAddr("::ffff:192.0.2.1").As16()
	require.Equal(t, mapped[:], b[16:32])
}

func TestProxyHeaderV2Local(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"unspec", proxyTestHeader(0x20, 0x00, nil)},
		// LOCAL ignores whatever address block it carries, even AF_UNIX.
		{"with inet block", proxyTestHeader(0x20, 0x11, make([]byte, 12))},
		{"with unix block", proxyTestHeader(0x20, 0x31, make([]byte, 216))},
		{"encoded for invalid addrs", AppendProxyHeaderV2(nil, netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.1:1"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(append(bytes.Clone(tt.wire), 'x'))
			h, err := ReadProxyHeaderV2(r)
			require.NoError(t, err)
			require.Equal(t, ProxyCommandLocal, h.Command)
			require.False(t, h.Src.IsValid())
			require.False(t, h.Dst.IsValid())
			require.Equal(t, 1, r.Len())
		})
	}
}

func TestProxyHeaderV2UnspecProxy(t *testing.T) {
	r := bytes.NewReader(proxyTestHeader(0x21, 0x00, []byte{1, 2, 3}))
	h, err := ReadProxyHeaderV2(r)
	require.NoError(t, err)
	require.Equal(t, ProxyCommandProxy, h.Command)
	require.False(t, h.Src.IsValid())
	require.Zero(t, r.Len())
}

func TestProxyHeaderV2SkipsTLVs(t *testing.T) {
	body := []byte{127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0x0c, 0xea}
	body = append(body, 0x04, 0x00, 0x00)                   // PP2_TYPE_NOOP, empty
	body = append(body, 0x05, 0x00, 0x03, 'i', 'd', '7')    // PP2_TYPE_UNIQUE_ID
	body = append(body, 0x20, 0x00, 0x02, 0x01, 0x00)       // PP2_TYPE_SSL, truncated sub-TLVs are not our business
	body = append(body, 0xEE, 0x00, 0x04, 'v', 'p', 'c', 0) // custom
	r := bytes.NewReader(append(proxyTestHeader(0x21, 0x11, body), "\x0a\x00\x00\x00"...))
	h, err := ReadProxyHeaderV2(r)
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.1:12345"), h.Src)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.2:3306"), h.Dst)
	require.Equal(t, 4, r.Len())
}

func TestProxyHeaderV2Errors(t *testing.T) {
	v4 := make([]byte, 12)
	tests := []struct {
		name    string
		wire    []byte
		want    error
		message string
	}{
		{"empty", nil, io.EOF, ""},
		{"MySQL packet instead", []byte{0x0a, 0, 0, 0, 0x0a, '8', '.', '0', 0, 1, 2, 3, 4, 5, 6, 7}, ErrNoProxyHeader, ""},
		{"short garbage", []byte("GET /"), ErrNoProxyHeader, ""},
		{"v1 header", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrNoProxyHeader, "v1 is not supported"},
		{"signature cut", proxyTestSig[:7], io.ErrUnexpectedEOF, "truncated"},
		{"fixed part cut", proxyTestHeader(0x21, 0x11, v4)[:14], io.ErrUnexpectedEOF, "truncated"},
		{"version 1", proxyTestHeader(0x11, 0x11, v4), ErrBadProxyHeader, "version 1"},
		{"version 3", proxyTestHeader(0x31, 0x11, v4), ErrBadProxyHeader, "version 3"},
		{"unknown command", proxyTestHeader(0x22, 0x11, v4), ErrBadProxyHeader, "command"},
		{"AF_UNIX", proxyTestHeader(0x21, 0x31, make([]byte, 216)), ErrBadProxyHeader, "AF_UNIX"},
		{"unknown family", proxyTestHeader(0x21, 0x41, v4), ErrBadProxyHeader, "family"},
		{"DGRAM", proxyTestHeader(0x21, 0x12, v4), ErrBadProxyHeader, "STREAM"},
		{"transport unspec", proxyTestHeader(0x21, 0x10, v4), ErrBadProxyHeader, "STREAM"},
		{"v4 block too short", proxyTestHeader(0x21, 0x11, v4[:11]), ErrBadProxyHeader, "too short"},
		{"v6 block too short", proxyTestHeader(0x21, 0x21, make([]byte, 35)), ErrBadProxyHeader, "too short"},
		{"too long", proxyTestHeader(0x21, 0x11, make([]byte, 4097)), ErrBadProxyHeader, "exceeds"},
		{"addresses cut", proxyTestHeader(0x21, 0x11, v4)[:20], io.ErrUnexpectedEOF, "truncated"},
		{"TLVs cut", proxyTestHeader(0x21, 0x11, make([]byte, 40))[:50], io.ErrUnexpectedEOF, "truncated"},
		{"LOCAL block cut", proxyTestHeader(0x20, 0x00, make([]byte, 10))[:20], io.ErrUnexpectedEOF, "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadProxyHeaderV2(bytes.NewReader(tt.wire))
			require.ErrorIs(t, err, tt.want)
			require.ErrorContains(t, err, tt.message)
			require.Nil(t, h)
		})
	}
}

// A header of the maximum accepted length is still read, and exactly.
func TestProxyHeaderV2MaxLength(t *testing.T) {
	body := append(make([]byte, 12), 0xEE, 0x0F, 0xF1)
	body = append(body, make([]byte, proxyV2MaxLen-len(body))...)
	r := bytes.NewReader(append(proxyTestHeader(0x21, 0x11, body), 'x'))
	_, err := ReadProxyHeaderV2(r)
	require.NoError(t, err)
	require.Equal(t, 1, r.Len())
}

func FuzzProxyHeaderV2(f *testing.F) {
	f.Add(AppendProxyHeaderV2(nil, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("6.7.8.9:10")))
	f.Add(AppendProxyHeaderV2(nil, netip.MustParseAddrPort("[2001:db8::1]:5"), netip.MustParseAddrPort("6.7.8.9:10")))
	f.Add(AppendProxyHeaderV2(nil, netip.AddrPort{}, netip.AddrPort{}))
	f.Add(proxyTestHeader(0x21, 0x11, append(make([]byte, 12), 0x04, 0x00, 0x01, 0xff)))
	f.Add(proxyTestHeader(0x21, 0x21, append(bytes.Repeat([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}, 2), 0, 1, 0, 2)))
	f.Add(proxyTestHeader(0x21, 0x31, make([]byte, 216)))
	f.Add(proxyTestHeader(0x20, 0x00, nil))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, wire []byte) {
		r := bytes.NewReader(wire)
		h, err := ReadProxyHeaderV2(r)
		if err != nil {
			require.Nil(t, h)
			return
		}
		consumed := len(wire) - r.Len()
		require.Equal(t, proxyV2FixedLen+int(binary.BigEndian.Uint16(wire[14:16])), consumed)

		again, err := ReadProxyHeaderV2(bytes.NewReader(AppendProxyHeaderV2(nil, h.Src, h.Dst)))
		require.NoError(t, err)
		require.Equal(t, h.Src, again.Src)
		require.Equal(t, h.Dst, again.Dst)
		if h.Src.IsValid() {
			require.Equal(t, ProxyCommandProxy, again.Command)
		}
	})
}
