package api

import (
	"net/http"
	"path"
	"strings"
)

// canonicalPaths answers a request whose path is not in canonical form
// ("//", "/./", "/../") with the API's JSON 404 instead of letting
// http.ServeMux answer it with an HTML redirect to the cleaned path: API
// clients expect JSON from every endpoint, and a redirected PUT or DELETE
// would be resent as a GET by many of them.
func canonicalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := path.Clean("/" + p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if r.Method != http.MethodConnect && clean != p {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint: "+p+" (not a canonical path; did you mean "+clean+"?)")
			return
		}
		next.ServeHTTP(w, r)
	})
}
