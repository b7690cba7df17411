package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
)

// A single node keeps no lease; the API says -1, the table shows "-" rather
// than "-1s" (issue 14).
func TestMembersWithoutLease(t *testing.T) {
	var out bytes.Buffer
	renderMembers(&out, memberStart, []api.MemberAnswer{{ID: "solo", Valid: true,
		Endpoints: &api.Endpoints{SQL: "127.0.0.1:6000", API: "127.0.0.1:3080"}, State: "up",
		StartTime: &memberStart, LeaseTTL: -1}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	require.NotContains(t, lines[1], "-1s")
	fields := strings.Fields(lines[1])
	header := strings.Fields(lines[0])
	require.Equal(t, len(header), len(fields), "%q", out.String())
	require.Equal(t, "-", fields[6], "LEASE-TTL column: %q", out.String())
}
