package playground

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TableAccept asks the API server to render a list as a Table, with the
// columns the resource declares, as `kubectl get` does.
const TableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// GetTable GETs absPath (a list URL such as
// /apis/hookline.dev/v1alpha1/namespaces/demo/webhooksubscriptions) as a
// server-side Table.
func GetTable(ctx context.Context, rc rest.Interface, absPath string) (*metav1.Table, error) {
	raw, err := rc.Get().AbsPath(absPath).SetHeader("Accept", TableAccept).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting %s as a Table: %w", absPath, err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, fmt.Errorf("decoding the Table of %s: %w", absPath, err)
	}
	if table.Kind != "Table" {
		return nil, fmt.Errorf("the API server answered %s with a %q, not a Table", absPath, table.Kind)
	}
	return &table, nil
}

// PrintTable writes table as `kubectl get` prints it: the columns of
// priority 0 (those shown without -o wide), names upper-cased, aligned
// with three spaces between columns, a cell cut at its first line break,
// and "No resources found." for an empty list. Control characters in cells
// are escaped, since cells come from objects anyone with write access
// shapes.
func PrintTable(w io.Writer, table *metav1.Table) error {
	if len(table.Rows) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	// kubectl's tab writer settings.
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	var shown []int
	var header []string
	for i, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			shown = append(shown, i)
			header = append(header, strings.ToUpper(printable(c.Name)))
		}
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range table.Rows {
		cells := make([]string, 0, len(shown))
		for _, i := range shown {
			if i < len(row.Cells) {
				cells = append(cells, cellText(row.Cells[i]))
			} else {
				cells = append(cells, "")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the table: %w", err)
	}
	return nil
}

// cellText is a cell as kubectl shows it: nothing for a missing value, a
// string up to its first line break (then "..."), anything else as Go
// formats it.
func cellText(cell any) string {
	switch v := cell.(type) {
	case nil:
		return ""
	case string:
		if i := strings.IndexAny(v, "\f\n\r"); i >= 0 {
			return printable(v[:i]) + "..."
		}
		return printable(v)
	default:
		return printable(fmt.Sprint(v))
	}
}

// printable escapes the runes of s a terminal would interpret (escape
// sequences, tabs that would break the alignment), leaving the rest as is.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) || r == ' ' {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
