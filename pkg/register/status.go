package register

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// statusBody is TiDB's /status answer. A generic server's connection count
// is not known without credentials, so it is always 0.
type statusBody struct {
	Connections int    `json:"connections"`
	Version     string `json:"version"`
	GitHash     string `json:"git_hash"`
}

// handleStatus answers 200 only while the backend accepts MySQL connections,
// as TiDB's /status turns 500 when TiDB stops serving: the proxy's health
// check then stops routing to it.
func (r *Registrar) handleStatus(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), r.t.probe)
	defer cancel()
	if err := mysql.CheckSQL(ctx, r.dialer, r.cfg.Addr); err != nil {
		http.Error(w, "backend "+r.cfg.Addr+" is not accepting connections: "+err.Error(),
			http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	err := json.NewEncoder(w).Encode(statusBody{Version: r.Version(), GitHash: gitHash})
	if err != nil {
		r.lg.Debug("writing /status", zap.Error(err))
	}
}
