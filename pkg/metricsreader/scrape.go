package metricsreader

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/lib/httpkeep"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Metric names on a TiDB status port.
const (
	metricCPUSeconds  = "process_cpu_seconds_total"
	metricRSS         = "process_resident_memory_bytes"
	metricMaxProcs    = "tidb_server_maxprocs"
	metricMemoryQuota = "tidb_server_memory_quota_bytes"
)

// scrapedNames are the metrics read, in simpleLines' order.
var scrapedNames = [...]string{metricCPUSeconds, metricRSS, metricMaxProcs, metricMemoryQuota}

// maxParallelScrapes bounds the connections one round opens at once.
const maxParallelScrapes = 16

// maxPageBytes bounds one /metrics answer as sent (compressed, when the
// backend compresses); a TiDB page is a few MiB before compression.
const maxPageBytes = 64 << 20

// maxLineBytes bounds one exposition line; TiDB's longest are far shorter.
const maxLineBytes = 1 << 20

// scanBuffers are the line buffers pages are scanned with: one allocated
// per scrape was most of an idle proxy's garbage with 1,000 backends
// scraped every 5 s (docs/benchmarks.md, P6).
var scanBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// scrapeSample is what one scrape leaves for the next: the CPU counter and
// when it was read. Only the latest is kept per target.
type scrapeSample struct {
	statusAddr string
	at         time.Time
	cpuSeconds float64
}

// scraped holds the figures read from one /metrics page.
type scraped struct {
	at                          time.Time
	cpuSeconds, rss             float64
	maxProcs, quota             float64
	hasCPUSeconds, hasRSS       bool
	hasMaxProcs, hasMemoryQuota bool
}

// scrapeAll scrapes every target with a status port in parallel, each bounded
// by Timeout, and turns the pages into metrics using the previous samples.
func (r *Reader) scrapeAll(ctx context.Context, targets []Target) map[string]observer.Metrics {
	type outcome struct {
		t    Target
		sa   string // t's status address, worked out once a round
		s    scraped
		err  error
		skip bool // no status port: nothing to scrape, nothing to report
		conn *httpkeep.Conn
	}
	outcomes := make([]outcome, len(targets))
	sem := make(chan struct{}, maxParallelScrapes)
	var wg sync.WaitGroup
	// The scrapes take their targets' kept connections; those left here
	// belong to targets gone, or without a status port now.
	old := r.conns
	r.conns = make(map[string]*httpkeep.Conn, len(old))
	for i, t := range targets {
		sa := t.statusAddr()
		outcomes[i].t, outcomes[i].sa = t, sa
		if sa == "" {
			outcomes[i].skip = true
			continue
		}
		kept := old[t.Addr]
		delete(old, t.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				kept.Close()
				outcomes[i].err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			outcomes[i].s, outcomes[i].conn, outcomes[i].err = r.scrape(ctx, sa, kept)
		}()
	}
	for _, c := range old {
		c.Close()
	}
	wg.Wait()

	res := make(map[string]observer.Metrics, len(targets))
	live := make(map[string]bool, len(targets))
	for _, o := range outcomes {
		live[o.t.Addr] = true
		if o.conn != nil {
			r.conns[o.t.Addr] = o.conn
		}
		if o.skip {
			continue
		}
		if o.err != nil {
			r.lg.Debug("scrape failed", zap.String("backend", o.t.Addr), zap.Error(o.err))
			continue
		}
		if m, ok := r.derive(o.t.Addr, o.sa, o.s); ok {
			res[o.t.Addr] = m
		}
	}
	for addr := range r.prev {
		if !live[addr] {
			delete(r.prev, addr)
		}
	}
	return res
}

// derive computes the fractions from one page and the target's previous
// sample, then keeps this page's CPU counter for the next round. A failed
// scrape keeps the older sample, which still gives a valid (longer) delta.
// addr is the backend's address, sa its status address.
func (r *Reader) derive(addr, sa string, s scraped) (observer.Metrics, bool) {
	m := observer.Metrics{Source: SourceScrape, UpdatedAt: s.at}
	if s.hasCPUSeconds {
		prev, ok := r.prev[addr]
		if ok && prev.statusAddr == sa && s.hasMaxProcs && s.maxProcs > 0 {
			dt := s.at.Sub(prev.at).Seconds()
			// A negative delta means the counter restarted with the process.
			if d := s.cpuSeconds - prev.cpuSeconds; dt > 0 && d >= 0 {
				m.CPU, m.HasCPU = d/dt/s.maxProcs, true
			}
		}
		r.prev[addr] = scrapeSample{statusAddr: sa, at: s.at, cpuSeconds: s.cpuSeconds}
	}
	if s.hasRSS && s.hasMemoryQuota && s.quota > 0 {
		m.Memory, m.HasMemory = s.rss/s.quota, true
	}
	if !finite(m.CPU) {
		m.CPU, m.HasCPU = 0, false
	}
	if !finite(m.Memory) {
		m.Memory, m.HasMemory = 0, false
	}
	return m, m.HasCPU || m.HasMemory
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// scrape fetches and parses the /metrics page of status address sa.
func (r *Reader) scrape(ctx context.Context, sa string, kept *httpkeep.Conn) (scraped, *httpkeep.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	target := httpkeep.Target{
		HostPort: sa, Path: "/metrics", TLS: r.cfg.StatusTLS,
		// Plain text only: the filter below works on the text format.
		Accept: "text/plain;version=0.0.4",
		Gzip:   true, Budget: maxPageBytes,
	}
	var s scraped
	code, kept, err := r.scraper.Get(ctx, target, kept, func(body io.Reader) error {
		var err error
		s, err = parseExposition(body)
		return err
	})
	if err != nil {
		return scraped{}, kept, fmt.Errorf("scrape %s: %w", target.URL(), err)
	}
	if code != http.StatusOK {
		return scraped{}, kept, fmt.Errorf("scrape %s: status %d %s", target.URL(), code, http.StatusText(code))
	}
	s.at = r.now()
	return s, kept, nil
}

// parseExposition reads the few metrics the reader needs. A TiDB page is
// megabytes of histograms, so lines of other metrics are dropped before
// they are parsed. The lines kept are read by simpleLines when they are as
// a Prometheus client writes these metrics (no labels, no timestamp), and
// by the text format's parser otherwise: simpleLines reads them as that
// parser does (FuzzParseExposition) at a fraction of its cost, which was
// most of a scrape's with 1,000 backends scraped every 5 s
// (docs/benchmarks.md, P6).
func parseExposition(body io.Reader) (scraped, error) {
	var kept bytes.Buffer
	var simple simpleLines
	buf := scanBuffers.Get().(*[]byte)
	defer scanBuffers.Put(buf)
	sc := bufio.NewScanner(body)
	sc.Buffer((*buf)[:0], maxLineBytes)
	for sc.Scan() {
		if line := sc.Bytes(); wanted(line) {
			kept.Write(line)
			kept.WriteByte('\n')
			simple.read(line)
		}
	}
	if err := sc.Err(); err != nil {
		return scraped{}, fmt.Errorf("read metrics: %w", err)
	}
	if !simple.other {
		return simple.scraped(), nil
	}
	return parseText(&kept)
}

// parseText reads the lines of scrapedNames with the text format's parser.
func parseText(lines io.Reader) (scraped, error) {
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(lines)
	if err != nil {
		return scraped{}, fmt.Errorf("parse metrics: %w", err)
	}
	var s scraped
	s.cpuSeconds, s.hasCPUSeconds = firstValue(families[metricCPUSeconds])
	s.rss, s.hasRSS = firstValue(families[metricRSS])
	s.maxProcs, s.hasMaxProcs = firstValue(families[metricMaxProcs])
	s.quota, s.hasMemoryQuota = firstValue(families[metricMemoryQuota])
	return s, nil
}

// simpleLines reads the lines of scrapedNames (wanted ones) in the forms a
// Prometheus client writes them: "# HELP name text", "# TYPE name
// counter|gauge|untyped" before the samples, and "name value". Any other
// line, or one the text format's parser would refuse (a second HELP or
// TYPE, a TYPE after samples, a bad value) or read otherwise (a HELP text
// with escapes, a timestamp), sets other: the parser then reads them all.
type simpleLines struct {
	families [len(scrapedNames)]struct {
		help, typ, samples bool
		value              float64
	}
	other bool
}

func (l *simpleLines) read(line []byte) {
	if l.other {
		return
	}
	rest, comment := bytes.CutPrefix(line, []byte("# "))
	var keyword []byte
	if comment {
		keyword, rest, comment = bytes.Cut(rest, []byte(" "))
		if !comment {
			l.other = true
			return
		}
	}
	i := slices.IndexFunc(scrapedNames[:], func(name string) bool { return bytes.HasPrefix(rest, []byte(name)) })
	if i < 0 || len(rest) < len(scrapedNames[i])+2 || rest[len(scrapedNames[i])] != ' ' {
		l.other = true
		return
	}
	f := &l.families[i]
	rest = rest[len(scrapedNames[i])+1:]
	switch {
	case !comment:
		// The value is all that follows, in the parser's float syntax.
		v, err := strconv.ParseFloat(string(rest), 64)
		if err != nil || bytes.ContainsAny(rest, "pP_ \t") {
			l.other = true
			return
		}
		if !f.samples {
			f.value = v
		}
		f.samples = true
	case string(keyword) == "HELP" && !f.help && rest[0] != ' ' && rest[0] != '\t' && bytes.IndexByte(rest, '\\') < 0:
		f.help = true
	case string(keyword) == "TYPE" && !f.typ && !f.samples && slices.Contains([]string{"counter", "gauge", "untyped"}, string(rest)):
		f.typ = true
	default:
		l.other = true
	}
}

// scraped is what the lines said, when they were all simple.
func (l *simpleLines) scraped() scraped {
	f := &l.families
	return scraped{
		cpuSeconds: f[0].value, hasCPUSeconds: f[0].samples,
		rss: f[1].value, hasRSS: f[1].samples,
		maxProcs: f[2].value, hasMaxProcs: f[2].samples,
		quota: f[3].value, hasMemoryQuota: f[3].samples,
	}
}

// wanted reports whether an exposition line is a sample, HELP or TYPE line
// of one of scrapedNames.
func wanted(line []byte) bool {
	rest := line
	if bytes.HasPrefix(rest, []byte("#")) {
		rest = bytes.TrimLeft(rest[1:], " \t")
		switch {
		case bytes.HasPrefix(rest, []byte("HELP")):
			rest = rest[len("HELP"):]
		case bytes.HasPrefix(rest, []byte("TYPE")):
			rest = rest[len("TYPE"):]
		default:
			return false
		}
		rest = bytes.TrimLeft(rest, " \t")
	}
	for _, name := range scrapedNames {
		if !bytes.HasPrefix(rest, []byte(name)) {
			continue
		}
		if len(rest) == len(name) {
			return true
		}
		switch rest[len(name)] {
		case ' ', '\t', '{':
			return true
		}
	}
	return false
}

// firstValue returns the value of a family's first series. TiDB exports
// these metrics without labels, so there is exactly one.
func firstValue(mf *dto.MetricFamily) (float64, bool) {
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, false
	}
	m := mf.GetMetric()[0]
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Untyped != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}
