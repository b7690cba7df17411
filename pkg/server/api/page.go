package api

import (
	_ "embed"
	"net/http"
)

//go:embed status.html
var statusHTML []byte

// statusPage serves the self-contained status page.
func (s *Server) statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(statusHTML)
}
