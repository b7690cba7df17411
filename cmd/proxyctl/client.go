package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
)

// maxBody bounds what proxyctl reads from the API; the largest answer is a
// sessions list, far below it.
const maxBody = 64 << 20

type clientOptions struct {
	base     string
	token    string
	timeout  time.Duration
	cacert   string
	insecure bool
	// cert and key are a client certificate, for an API behind mTLS.
	cert, key string
}

// client talks to the API. Bodies come back as bytes so that -o json can
// print what the API said rather than what proxyctl understood of it.
type client struct {
	base  string // scheme://host[:port][/prefix], no trailing slash
	token string
	http  *http.Client
}

func newClient(o clientOptions) (*client, error) {
	base := strings.TrimRight(strings.TrimSpace(o.base), "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base // "127.0.0.1:3080" is what operators type
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--api %q: want a URL like %s", o.base, defaultAPI)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // an admin API is reached directly, never through HTTP_PROXY
	if o.cacert != "" || o.insecure || o.cert != "" {
		tc := &tls.Config{InsecureSkipVerify: o.insecure}
		if o.cacert != "" {
			pool, err := libconfig.LoadCA(o.cacert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			tc.RootCAs = pool
		}
		if o.cert != "" {
			cert, err := tls.LoadX509KeyPair(o.cert, o.key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	return &client{base: base, token: o.token, http: &http.Client{Transport: tr, Timeout: o.timeout}}, nil
}

// request is one call. ok lists statuses besides 2xx that carry an answer
// rather than an api.Error (health answers 503 with a Health document).
type request struct {
	method      string
	path        string
	accept      string
	contentType string
	body        []byte
	ok          []int
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r. Errors are *connError when the API could not be asked and
// *apiError when it answered with an error.
func (c *client) do(ctx context.Context, r request) (*response, error) {
	u := c.base + r.path
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, &connError{url: u, err: err}
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &connError{url: u, err: err, timeout: c.http.Timeout}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &connError{url: u, err: fmt.Errorf("reading the answer: %w", err)}
	}
	out := &response{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.StatusCode/100 == 2 || slices.Contains(r.ok, resp.StatusCode) {
		return out, nil
	}
	return nil, newAPIError(resp.StatusCode, data, c.token != "")
}

// getJSON GETs path into v and returns the raw body.
func (c *client) getJSON(ctx context.Context, path string, v any) ([]byte, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, accept: "application/json"})
	if err != nil {
		return nil, err
	}
	return resp.body, c.decode(path, resp.body, v)
}

func (c *client) decode(path string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("unexpected answer from %s%s: %w", c.base, path, err)
	}
	return nil
}

// connError means the API could not be asked: refused, timed out, a TLS
// failure. Its message names the URL.
type connError struct {
	url     string
	err     error
	timeout time.Duration
}

func (e *connError) Error() string {
	return fmt.Sprintf("cannot reach the API at %s: %s", e.url, describeTransport(e.err, e.timeout))
}

func (e *connError) Unwrap() error { return e.err }

// describeTransport drops the "Get \"URL\":" that url.Error repeats and adds
// a hint where one helps.
func describeTransport(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %s (--timeout)", timeout)
		}
		err = ue.Err
	}
	msg := err.Error()
	if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") {
		msg += " (see --cacert and --insecure)"
	}
	return msg
}

// apiError is an error answer from the API.
type apiError struct {
	status int
	body   api.Error
	// details are one problem a line: the errors of a rejected config.
	details []string
}

func (e *apiError) Error() string { return e.body.Code + ": " + e.body.Message }

func newAPIError(status int, body []byte, hadToken bool) *apiError {
	var ce api.ConfigErrors
	if err := json.Unmarshal(body, &ce); err != nil || ce.Code == "" {
		// Not the API's JSON: a reverse proxy in between, or not Switchyard.
		msg := strings.TrimSpace(string(body))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if msg == "" || len(msg) > 200 {
			msg = http.StatusText(status)
		}
		return &apiError{status: status, body: api.Error{Code: fmt.Sprintf("HTTP_%d", status), Message: msg}}
	}
	if status == http.StatusUnauthorized && !hadToken {
		ce.Message += " (set --token or " + envToken + ")"
	}
	return &apiError{status: status, body: ce.Error, details: ce.Errors}
}
