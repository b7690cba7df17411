package server

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/pkg/sqlstats"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"go.uber.org/zap"
)

// StartCapture implements api.Traffic.
func (in *insight) StartCapture(o traffic.Options) (traffic.Status, error) {
	dir := *in.captureDir.Load()
	if dir == "" {
		return traffic.Status{}, fmt.Errorf("%w: set [traffic] capture-dir to where capture files may be written", api.ErrCaptureDisabled)
	}
	in.captureMu.Lock()
	defer in.captureMu.Unlock()
	if cur := in.capture.Load(); cur != nil && cur.Status().State == traffic.StateRunning {
		return cur.Status(), fmt.Errorf("%w (cluster %s); cancel it first", traffic.ErrRunning, cur.Cluster())
	}
	c, err := traffic.Start(in.lg.Named("traffic"), dir, o)
	if err != nil {
		return traffic.Status{}, err
	}
	in.capture.Store(c)
	in.capturePackets.Store(true)
	in.lg.Info("traffic capture started", zap.String("cluster", o.Cluster), zap.String("file", c.Status().File),
		zap.Duration("duration", o.Duration), zap.Int64("max_bytes", o.MaxBytes))
	in.closers.Add(1)
	go func() {
		defer in.closers.Done()
		<-c.Done()
		in.captureMu.Lock()
		if in.capture.Load() == c {
			in.capturePackets.Store(false)
		}
		in.captureMu.Unlock()
	}()
	return c.Status(), nil
}

// CaptureStatus implements api.Traffic: the running capture or the last one.
func (in *insight) CaptureStatus() (traffic.Status, bool) {
	c := in.capture.Load()
	if c == nil {
		return traffic.Status{}, false
	}
	return c.Status(), true
}

// CancelCapture implements api.Traffic.
func (in *insight) CancelCapture() (traffic.Status, error) {
	c := in.capture.Load()
	if c == nil || c.Status().State != traffic.StateRunning {
		return traffic.Status{}, errNoCapture
	}
	c.Stop("cancelled")
	return c.Status(), nil
}

var errNoCapture = fmt.Errorf("%w: no traffic capture is running", api.ErrNotRunning)

// stopCapture ends a running capture at shutdown.
func (in *insight) stopCapture() {
	if c := in.capture.Load(); c != nil {
		c.Stop("proxy shutting down")
	}
}

// captureRecord queues c for the running capture.
// st is the statement's digest when the observer computed it (nil: not).
func (o *commandObserver) captureRecord(cp *traffic.Capture, c *backend.Command, st *sqlstats.Statement) {
	r := &traffic.Record{
		OffsetUs: c.Start.Sub(cp.Began()).Microseconds(), ConnID: c.ConnID, Cmd: c.Cmd, Command: metrics.CommandName(c.Cmd),
		User: c.User, Schema: c.DB, LatencyUs: c.Duration.Microseconds(), Rows: c.RowsSent, RowsAffected: c.RowsAffected,
		ErrorCode: c.ErrCode,
	}
	if c.Checksummed {
		r.Checksum = strconv.FormatUint(c.Checksum, 16)
	}
	switch c.Cmd {
	case mysql.ComQuery, mysql.ComStmtPrepare:
		r.Text, r.Redacted = o.captureText(c.Text, st)
		r.StmtID = c.StmtID
	case mysql.ComStmtExecute, mysql.ComStmtSendLongData, mysql.ComStmtFetch, mysql.ComStmtClose, mysql.ComStmtReset:
		if len(c.Packet) >= 4 {
			r.StmtID = binary.LittleEndian.Uint32(c.Packet)
		}
		if c.Cmd != mysql.ComStmtClose && c.Cmd != mysql.ComStmtReset {
			r.Payload = append([]byte(nil), c.Packet...)
		}
		// The statement's text, so that a replayer can prepare statements
		// prepared before the capture began.
		r.Text, r.Redacted = o.captureText(c.Text, st)
	case mysql.ComInitDB:
		r.Text = string(c.Packet)
	}
	// COM_CHANGE_USER and the rest carry no payload: a change of user holds
	// an authentication response.
	cp.Add(r)
}

func (o *commandObserver) captureText(text []byte, st *sqlstats.Statement) (string, bool) {
	if len(text) == 0 {
		return "", false
	}
	if st == nil {
		st = o.in.digests.Statement(text)
	}
	if st.Sensitive {
		return st.Normalized, true
	}
	return string(text), false
}
