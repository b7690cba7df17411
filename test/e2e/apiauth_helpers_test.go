package e2e

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// The tokens of every e2e proxy whose API is on: the API answers anonymous
// callers only on /livez, /readyz, /metrics and /api/v1/ha/leader.
const (
	e2eAdminToken = "e2e-admin-token"
	e2eReadToken  = "e2e-read-token"
)

// apiTOML is the [api] section of a test proxy: addr "" turns the API off
// (the default, 127.0.0.1:3080, would collide between tests).
func apiTOML(addr string) string {
	if addr == "" {
		return "[api]\naddr = \"\"\n"
	}
	return fmt.Sprintf("[api]\naddr = %q\ntoken = %q\nread-token = %q\n", addr, e2eAdminToken, e2eReadToken)
}

// bearer adds a token to every request it sends.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// readClient reads the API with the read token.
var readClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: bearer{token: e2eReadToken, base: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
}

// apiCall sends one request with token ("" for none) and returns the status
// and body.
func apiCall(method, url, token string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
