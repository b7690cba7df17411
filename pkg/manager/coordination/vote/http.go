package vote

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// Path is where a node's API serves Voter.Handler.
const Path = "/internal/v1/probe-vote"

// maxVoteBody bounds a vote request or answer; both are small JSON objects.
const maxVoteBody = 64 << 10

// voteError is the JSON body of a refused request, shaped like the API's.
type voteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Handler serves POST Path (mount it there). With a token, requests
// need "Authorization: Bearer <token>". The proxy mounts it with no token
// behind the API's own authentication, which admits only fleet members
// (the admin token, or an admin client certificate).
func (v *Voter) Handler(token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
				writeVoteJSON(w, http.StatusUnauthorized, voteError{"UNAUTHORIZED", "probe votes need Authorization: Bearer <api.token>"})
				return
			}
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeVoteJSON(w, http.StatusMethodNotAllowed, voteError{"METHOD_NOT_ALLOWED", r.Method + " " + Path + ": use POST"})
			return
		}
		var req Request
		body := http.MaxBytesReader(w, r.Body, maxVoteBody)
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			writeVoteJSON(w, http.StatusBadRequest, voteError{"BAD_REQUEST", "vote request: " + err.Error()})
			return
		}
		// Read to the end (a trailing newline): only then does the server
		// watch the connection, so that a leader giving up on this vote
		// cancels the probe instead of leaving it to run out.
		_, _ = io.Copy(io.Discard, body)
		if req.Cluster == "" || req.Backend == "" {
			writeVoteJSON(w, http.StatusBadRequest, voteError{"BAD_REQUEST", "vote request: cluster and backend are required"})
			return
		}
		writeVoteJSON(w, http.StatusOK, v.HandleVote(r.Context(), req))
	})
}

func writeVoteJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// PeerClient asks other nodes for their votes.
type PeerClient struct {
	// HTTP is the client to use; nil means one without keep-alives or an
	// environment proxy (votes are rare, and a fresh connection is itself a
	// check that the peer is reachable).
	HTTP *http.Client
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// Scheme is "http" (default) or "https".
	Scheme string
}

// voteHTTPClient is PeerClient's default client. Without keep-alives it
// holds no connection, and no goroutine, between requests.
var voteHTTPClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: -1}).DialContext,
		DisableKeepAlives:      true,
		TLSHandshakeTimeout:    2 * time.Second,
		MaxResponseHeaderBytes: maxVoteBody,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// RequestVote asks the node whose API listens at apiAddr (host:port) for its
// vote; ctx bounds the whole exchange. An answer with a vote value other
// than down, up or unknown is an error.
func (c *PeerClient) RequestVote(ctx context.Context, apiAddr string, req Request) (Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("vote request to %s: %w", apiAddr, err)
	}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "http"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+apiAddr+Path, bytes.NewReader(body))
	if err != nil {
		return Response{}, fmt.Errorf("vote request to %s: %w", apiAddr, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = voteHTTPClient
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		return Response{}, fmt.Errorf("vote request to %s: %w", apiAddr, err)
	}
	defer hresp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(hresp.Body, maxVoteBody))
	if err != nil {
		return Response{}, fmt.Errorf("vote answer from %s: %w", apiAddr, err)
	}
	if hresp.StatusCode != http.StatusOK {
		var e voteError
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return Response{}, fmt.Errorf("vote answer from %s: %s: %s", apiAddr, hresp.Status, msg)
	}
	var resp Response
	if err := json.Unmarshal(raw, &resp); err != nil {
		return Response{}, fmt.Errorf("vote answer from %s: %w", apiAddr, err)
	}
	switch resp.Vote {
	case coordination.VoteDown, coordination.VoteUp, coordination.VoteUnknown:
	default:
		return Response{}, fmt.Errorf("vote answer from %s: unknown vote %q", apiAddr, resp.Vote)
	}
	return resp, nil
}
