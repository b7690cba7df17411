package metricsreader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// errNoSamples: Prometheus answered but knows none of the targets, e.g. it
// does not scrape this cluster or uses other labels. Scraping directly beats
// having no figures at all.
var errNoSamples = errors.New("prometheus returned no sample for any target")

// promClient is the part of the Prometheus API the reader uses.
type promClient interface {
	Query(ctx context.Context, query string, ts time.Time, opts ...promv1.Option) (model.Value, promv1.Warnings, error)
}

var _ promClient = promv1.API(nil)

// client returns the API client for url, rebuilt only when the URL changes.
func (r *Reader) client(url string) (promClient, error) {
	if r.prom != nil && r.promURL == url {
		return r.prom, nil
	}
	c, err := api.NewClient(api.Config{Address: url, Client: r.cfg.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %q: %w", url, err)
	}
	r.prom, r.promURL = promv1.NewAPI(c), url
	return r.prom, nil
}

// queryPrometheus runs the CPU and memory queries and maps their samples to
// targets by the instance label. Any failed query fails the round, so that
// the caller scrapes instead of publishing half the figures.
func (r *Reader) queryPrometheus(ctx context.Context, url string, targets []Target) (map[string]observer.Metrics, error) {
	c, err := r.client(url)
	if err != nil {
		return nil, err
	}
	byInstance := make(map[string]string, len(targets))
	for _, t := range targets {
		if sa := t.statusAddr(); sa != "" {
			byInstance[sa] = t.Addr
		}
	}
	now := r.now()
	cpu, err := r.query(ctx, c, r.cfg.CPUQuery, now, byInstance)
	if err != nil {
		return nil, err
	}
	mem, err := r.query(ctx, c, r.cfg.MemoryQuery, now, byInstance)
	if err != nil {
		return nil, err
	}
	res := make(map[string]observer.Metrics, len(cpu)+len(mem))
	for addr, v := range cpu {
		m := res[addr]
		m.CPU, m.HasCPU = v, true
		res[addr] = m
	}
	for addr, v := range mem {
		m := res[addr]
		m.Memory, m.HasMemory = v, true
		res[addr] = m
	}
	if len(res) == 0 {
		return nil, errNoSamples
	}
	for addr, m := range res {
		m.Source, m.UpdatedAt = SourcePrometheus, now
		res[addr] = m
	}
	return res, nil
}

// query runs one instant query and returns finite values keyed by target
// Addr. Samples of unknown instances are ignored.
func (r *Reader) query(ctx context.Context, c promClient, q string, ts time.Time, byInstance map[string]string) (map[string]float64, error) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	val, _, err := c.Query(qctx, q, ts, promv1.WithTimeout(r.cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", q, err)
	}
	out := make(map[string]float64)
	add := func(metric model.Metric, v model.SampleValue) {
		f := float64(v)
		if !finite(f) {
			return
		}
		if addr, ok := byInstance[string(metric[model.InstanceLabel])]; ok {
			out[addr] = f
		}
	}
	switch v := val.(type) {
	case model.Vector:
		for _, s := range v {
			add(s.Metric, s.Value)
		}
	case model.Matrix: // a custom range query: take each series' last point
		for _, s := range v {
			if n := len(s.Values); n > 0 {
				add(s.Metric, s.Values[n-1].Value)
			}
		}
	default:
		return nil, fmt.Errorf("prometheus query %q: unexpected result type %s", q, val.Type())
	}
	return out, nil
}

// PrometheusURLFromTopology turns the value of PD's /topology/prometheus key,
// JSON such as {"ip":"10.0.1.5","port":9090,...}, into "http://10.0.1.5:9090".
// The port may be a number or a string.
func PrometheusURLFromTopology(value []byte) (string, error) {
	var info struct {
		IP   string          `json:"ip"`
		Port json.RawMessage `json:"port"`
	}
	if err := json.Unmarshal(value, &info); err != nil {
		return "", fmt.Errorf("prometheus topology: %w", err)
	}
	if info.IP == "" {
		return "", errors.New("prometheus topology: no ip")
	}
	port := strings.Trim(string(info.Port), `"`)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("prometheus topology: bad port %s", info.Port)
	}
	return "http://" + net.JoinHostPort(info.IP, port), nil
}
