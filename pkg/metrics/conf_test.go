package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// TestConfMetricNames keeps the shipped dashboard and alert rules in step
// with the metric names: each switchyard_* name they use must be exported.
func TestConfMetricNames(t *testing.T) {
	mfs, err := newPopulated(t).Registry().Gather()
	require.NoError(t, err)
	exported := make(map[string]bool)
	for _, mf := range mfs {
		exported[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				exported[mf.GetName()+suffix] = true
			}
		}
	}

	nameRE := regexp.MustCompile(`switchyard_[a-z0-9_]+`)
	for _, file := range []string{"../../conf/grafana-dashboard.json", "../../conf/alerts.yml"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			if strings.HasSuffix(file, ".json") {
				require.True(t, json.Valid(data), "invalid JSON")
			}
			names := nameRE.FindAllString(string(data), -1)
			require.NotEmpty(t, names)
			for _, name := range names {
				require.True(t, exported[name], "%s uses %s, which pkg/metrics does not export", file, name)
			}
		})
	}
}
