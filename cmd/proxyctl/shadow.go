package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

func (a *app) shadowCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "shadow [NAME]",
		Short: "Show live shadowing: per [[shadow]] counters and the digests whose results differed",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			path := "/api/v1/shadow"
			if len(args) == 1 {
				path += "?name=" + url.QueryEscape(args[0])
			}
			var list api.ShadowList
			raw, err := c.getJSON(cmd.Context(), path, &list)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderShadows(w, list, limit) })
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "digests shown per shadow")
	return cmd
}

func renderShadows(w io.Writer, list api.ShadowList, limit int) {
	if len(list.Shadows) == 0 {
		fmt.Fprintln(w, "no [[shadow]] configured")
		return
	}
	t := newTable(w, "NAME", "SOURCE", "TARGET", "SAMPLE", "SAMPLED", "COMPARED", "MISMATCHES", "DROPPED", "SKIPPED", "ERRORS", "QUEUE", "LAST-ERROR")
	for _, s := range list.Shadows {
		t.row(s.Name, s.Source, s.Target, fmt.Sprint(s.Sample), fmt.Sprint(s.Sampled), fmt.Sprint(s.Compared),
			fmt.Sprint(s.Mismatches), fmt.Sprint(s.Dropped), fmt.Sprint(s.Skipped), fmt.Sprint(s.Errors),
			fmt.Sprintf("%d/%d", s.QueueLength, s.QueueSize), s.LastError)
	}
	t.flush()
	for _, s := range list.Shadows {
		if len(s.Digests) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s -> %s)\n", s.Name, s.Source, s.Target)
		d := newTable(w, "DIGEST", "COMPARED", "MISMATCHES", "ROWS", "ERRORS", "SOURCE-AVG-MS", "TARGET-AVG-MS", "DIGEST-TEXT")
		for i, r := range s.Digests {
			if i == limit {
				break
			}
			d.row(shortDigest(r.Digest), fmt.Sprint(r.Compared), fmt.Sprint(r.Mismatches), fmt.Sprint(r.RowMismatches),
				fmt.Sprint(r.ErrorMismatches), fmt.Sprintf("%.3f", r.SourceAvgMs), fmt.Sprintf("%.3f", r.TargetAvgMs), r.DigestText)
		}
		d.flush()
	}
}
