package register

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/topology"
)

// gitHash is what TiDB reports when it was built without one; a generic
// MySQL server has none either.
const gitHash = "None"

// infoValue renders the info key for the given version.
func (r *Registrar) infoValue(version string) (string, error) {
	host, _, _ := net.SplitHostPort(r.cfg.Addr) // validated by New
	b, err := json.Marshal(topology.Info{
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

// greetingVersion reads the server version from the backend's greeting.
func greetingVersion(ctx context.Context, d *net.Dialer, addr string) (string, error) {
	hs, err := mysql.ReadGreeting(ctx, d, addr)
	if err != nil {
		return "", err
	}
	if hs.ServerVersion == "" {
		return "", fmt.Errorf("greeting has an empty server version")
	}
	return hs.ServerVersion, nil
}
