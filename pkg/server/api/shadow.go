package api

import (
	"net/http"

	libapi "github.com/switchyard-db/switchyard/lib/api"
)

// Shadows is live shadowing ([[shadow]]), as the API needs it.
type Shadows interface {
	// ShadowStatus returns every mirror's counters and per-digest
	// comparison; never credentials.
	ShadowStatus() []libapi.ShadowStatus
}

// SetShadows enables GET /api/v1/shadow (read role; ?name= selects one
// mirror). Call it before Start.
func (s *Server) SetShadows(sh Shadows) {
	s.route("/api/v1/shadow", handlers{
		"GET": s.require(RoleRead, func(w http.ResponseWriter, r *http.Request) {
			all := sh.ShadowStatus()
			name := r.URL.Query().Get("name")
			out := libapi.ShadowList{Shadows: make([]libapi.ShadowStatus, 0, len(all))}
			for _, st := range all {
				if name == "" || st.Name == name {
					out.Shadows = append(out.Shadows, st)
				}
			}
			if name != "" && len(out.Shadows) == 0 {
				writeError(w, http.StatusNotFound, "SHADOW_NOT_FOUND", "no [[shadow]] named "+name)
				return
			}
			writeJSON(w, http.StatusOK, out)
		}),
	})
}
