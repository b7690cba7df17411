package register

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
)

// gitHash is what TiDB reports when it was built without one; a generic
// MySQL server has none either.
const gitHash = "None"

// topologyInfo is the value of <prefix>/<addr>/info, field for field and in
// the order TiDB's infosync writes it.
type topologyInfo struct {
	Version        string            `json:"version"`
	GitHash        string            `json:"git_hash"`
	IP             string            `json:"ip"`
	StatusPort     uint              `json:"status_port"`
	DeployPath     string            `json:"deploy_path"`
	StartTimestamp int64             `json:"start_timestamp"`
	Labels         map[string]string `json:"labels"`
}

// infoValue renders the info key for the given version.
func (r *Registrar) infoValue(version string) (string, error) {
	host, _, _ := net.SplitHostPort(r.cfg.Addr) // validated by New
	b, err := json.Marshal(topologyInfo{
		Version:        version,
		GitHash:        gitHash,
		IP:             host,
		StatusPort:     r.statusPort,
		DeployPath:     r.deployPath,
		StartTimestamp: r.started.Unix(),
		Labels:         r.cfg.Labels,
	})
	if err != nil {
		return "", fmt.Errorf("encode info: %w", err)
	}
	return string(b), nil
}

// maxGreeting bounds the first packet; real greetings are under 200 bytes.
const maxGreeting = 64 << 10

// greetingVersion reads the server version from the backend's initial
// handshake. observer.CheckSQL answers only "healthy or not", and the version
// is needed only for the info key, so this small read lives here.
func greetingVersion(ctx context.Context, d *net.Dialer, addr string) (string, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// A cancellation (shutdown) must unblock the read too, not only the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	pio := pnet.NewPacketIO(conn)
	defer pio.Release()
	pkt, err := pio.ReadPacket(maxGreeting)
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	hs, err := pnet.ParseInitialHandshake(pkt)
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if hs.ServerVersion == "" {
		return "", fmt.Errorf("greeting has an empty server version")
	}
	return hs.ServerVersion, nil
}
