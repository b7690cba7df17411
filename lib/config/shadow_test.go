package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const shadowBase = `
[proxy]
default-cluster = "main"

[[cluster]]
name = "main"
instances = ["127.0.0.1:3306"]

[[cluster]]
name = "canary"
instances = ["127.0.0.1:3307"]
`

// TestShadowParse: a [[shadow]] gets its defaults, and every problem is
// reported with its line.
func TestShadowParse(t *testing.T) {
	c, err := Parse([]byte(shadowBase + `
[[shadow]]
name = "upgrade"
source = "main"
target = "canary"
sample = 0.1
user = "shadow"
password = "s3cret"
`))
	require.NoError(t, err)
	require.Len(t, c.Shadows, 1)
	s := c.Shadows[0]
	require.Equal(t, Shadow{Name: "upgrade", Source: "main", Target: "canary", Sample: 0.1, User: "shadow", Password: "s3cret",
		Queue: DefaultShadowQueue, Connections: DefaultShadowConnections, Timeout: NewDuration(5 * time.Second),
		MaxDigests: DefaultShadowMaxDigests}, s)

	_, err = Parse([]byte(shadowBase + `
[[shadow]]
name = "a"
source = "main"
target = "main"
sample = 1.5
user = "shadow"

[[shadow]]
name = "a"
source = "main"
target = "nowhere"
sample = 0.1
queue = -1
`))
	require.Error(t, err)
	for _, want := range []string{
		`line 16: shadow[0].target "main": is its source; mirror to another cluster`,
		`line 17: shadow[0].sample 1.5: must be above 0 and at most 1`,
		`line 21: shadow[1].name "a": duplicates shadow[0].name`,
		`line 22: shadow[1].source "main": already the source of shadow[0]`,
		`line 23: shadow[1].target "nowhere": no [[cluster]] has that name`,
		`shadow[1].user must be set`,
		`line 25: shadow[1].queue -1: must be between 1 and 1000000`,
	} {
		require.ErrorContains(t, err, want)
	}
	require.NotContains(t, err.Error(), "s3cret")
}
