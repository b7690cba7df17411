package api

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/shadow"
)

type fakeShadows []shadow.Status

func (f fakeShadows) ShadowStatus() []shadow.Status { return f }

// TestShadowEndpoint: GET /api/v1/shadow needs the read role, lists every
// mirror or the one named, and 404s an unknown name.
func TestShadowEndpoint(t *testing.T) {
	f := newFixture(t)
	f.srv.SetShadows(fakeShadows{{Name: "a", Source: "east", Target: "west", Compared: 3, Mismatches: 1,
		Digests: []shadow.DigestStatus{{Digest: "d1", Mismatches: 1}}}, {Name: "b", Source: "west", Target: "east"}})

	rec := f.do(t, request{path: "/api/v1/shadow", anonymous: true})
	require.Equal(t, http.StatusUnauthorized, rec.Code)

	rec = f.do(t, request{path: "/api/v1/shadow"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var list libapi.ShadowList
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &list))
	require.Len(t, list.Shadows, 2)
	require.EqualValues(t, 1, list.Shadows[0].Digests[0].Mismatches)

	rec = f.do(t, request{path: "/api/v1/shadow?name=b"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &list))
	require.Len(t, list.Shadows, 1)
	require.Equal(t, "b", list.Shadows[0].Name)

	rec = f.do(t, request{path: "/api/v1/shadow?name=nope"})
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// TestConfigRedactsShadowPassword: the effective config never shows a
// [[shadow]] password.
func TestConfigRedactsShadowPassword(t *testing.T) {
	f := newFixture(t)
	cfg := configTOML + "\n[[shadow]]\nname = \"x\"\nsource = \"east\"\ntarget = \"west\"\nsample = 0.5\nuser = \"sh\"\npassword = \"shadow-pw-XYZ\"\n"
	require.NoError(t, os.WriteFile(f.path, []byte(cfg), 0o600))
	require.NoError(t, f.cfg.Reload("test"))
	rec := f.do(t, request{path: "/api/v1/config"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `name = "x"`)
	require.NotContains(t, rec.Body.String(), "shadow-pw-XYZ")
	require.Contains(t, rec.Body.String(), `password = "<redacted>"`)
}
