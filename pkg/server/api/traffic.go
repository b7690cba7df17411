package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"go.uber.org/zap"
)

// Errors a Traffic implementation wraps.
var (
	// ErrCaptureDisabled: [traffic] capture-dir is not set.
	ErrCaptureDisabled = errors.New("traffic capture is disabled")
	// ErrNotRunning: there is nothing to cancel.
	ErrNotRunning = errors.New("not running")
)

// Traffic starts, shows and cancels traffic captures.
type Traffic interface {
	StartCapture(o traffic.Options) (traffic.Status, error)
	CaptureStatus() (traffic.Status, bool)
	CancelCapture() (traffic.Status, error)
}

// maxCaptureDuration bounds one capture.
const maxCaptureDuration = 24 * time.Hour

// SetTraffic enables /api/v1/traffic/capture. Call it before Start.
func (s *Server) SetTraffic(t Traffic) {
	s.route("/api/v1/traffic/capture", handlers{
		"GET":    s.require(RoleRead, func(w http.ResponseWriter, _ *http.Request) { s.captureStatus(t, w) }),
		"POST":   s.require(RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.startCapture(t, w, r) }),
		"DELETE": s.require(RoleAdmin, func(w http.ResponseWriter, _ *http.Request) { s.cancelCapture(t, w) }),
	})
}

func (s *Server) captureStatus(t Traffic, w http.ResponseWriter) {
	st, ok := t.CaptureStatus()
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no traffic capture has run since the proxy started")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) startCapture(t Traffic, w http.ResponseWriter, r *http.Request) {
	var req libapi.TrafficCaptureRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "want a JSON body {\"cluster\", \"duration\", \"max_bytes\"}: "+err.Error())
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d <= 0 || d > maxCaptureDuration {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("duration %q: want a Go duration between 1s and %s, such as \"60s\"", req.Duration, maxCaptureDuration))
		return
	}
	if req.MaxBytes < 0 {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("max_bytes %d: must be 0 (no limit) or more", req.MaxBytes))
		return
	}
	if !s.knownCluster(req.Cluster) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such cluster: "+req.Cluster)
		return
	}
	st, err := t.StartCapture(traffic.Options{Cluster: req.Cluster, Duration: d, MaxBytes: req.MaxBytes})
	switch {
	case errors.Is(err, ErrCaptureDisabled):
		writeError(w, http.StatusConflict, "CAPTURE_DISABLED", err.Error())
		return
	case errors.Is(err, traffic.ErrRunning):
		writeError(w, http.StatusConflict, "CAPTURE_RUNNING", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	s.lg.Info("traffic capture requested", zap.String("cluster", req.Cluster), zap.String("remote", r.RemoteAddr))
	writeJSON(w, http.StatusCreated, st)
}

func (s *Server) cancelCapture(t Traffic, w http.ResponseWriter) {
	st, err := t.CancelCapture()
	if errors.Is(err, ErrNotRunning) {
		writeError(w, http.StatusConflict, "NOT_RUNNING", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}
