package playground

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPrintTable(t *testing.T) {
	columns := []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string"},
		{Name: "Status", Type: "string", Priority: 1},
		{Name: "Event Types", Type: "string"},
		{Name: "Count", Type: "integer"},
		{Name: "Age", Type: "date"},
	}
	for _, tc := range []struct {
		name  string
		table metav1.Table
		want  string
	}{
		{
			name:  "no rows",
			table: metav1.Table{ColumnDefinitions: columns},
			want:  "No resources found.\n",
		},
		{
			name: "priority 1 hidden, names upper-cased, aligned by three spaces",
			table: metav1.Table{ColumnDefinitions: columns, Rows: []metav1.TableRow{
				{Cells: []any{"orders", "all good", `["order.*"]`, int64(3), "5s"}},
				{Cells: []any{"a-much-longer-name", "failing", `["x"]`, int64(12), "10m"}},
			}},
			want: "" +
				"NAME                 EVENT TYPES   COUNT   AGE\n" +
				"orders               [\"order.*\"]   3       5s\n" +
				"a-much-longer-name   [\"x\"]         12      10m\n",
		},
		{
			name: "missing values print nothing, a short row is padded",
			table: metav1.Table{ColumnDefinitions: columns, Rows: []metav1.TableRow{
				{Cells: []any{"flaky", nil, nil, nil, "1s"}},
				{Cells: []any{"short"}},
			}},
			want: "" +
				"NAME    EVENT TYPES   COUNT   AGE\n" +
				"flaky                         1s\n" +
				"short                         \n",
		},
		{
			name: "a cell ends at its first line break; control characters are escaped",
			table: metav1.Table{ColumnDefinitions: columns, Rows: []metav1.TableRow{
				{Cells: []any{"multi", "", "first line\nsecond", true, "\x1b[31mred\t"}},
			}},
			want: "" +
				"NAME    EVENT TYPES     COUNT   AGE\n" +
				"multi   first line...   true    \\x1b[31mred\\t\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := PrintTable(&buf, &tc.table); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tc.want {
				t.Errorf("printed\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// The API server renders subscriptions with the columns the CRD declares,
// and PrintTable shows those kubectl shows without -o wide.
func TestGetTableOfSubscriptions(t *testing.T) {
	ns := newNamespace(t)
	for _, s := range Subscriptions("http://127.0.0.1:4321") {
		s.Namespace = ns
		createHookline(t, "webhooksubscriptions", s)
	}
	table, err := GetTable(context.Background(), kube.Discovery().RESTClient(), "/apis/hookline.dev/v1alpha1/namespaces/"+ns+"/webhooksubscriptions")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := PrintTable(&buf, table); err != nil {
		t.Fatal(err)
	}
	// The status columns (EVENT TYPES among them) are empty: nothing
	// reconciles these here.
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(""+
		"NAME     URL                                  EVENT TYPES   READY   REASON   HEALTHY   AGE\n"+
		"flaky    http://127.0.0.1:4321/fail/flaky                                              ") + `\d+s\n` + regexp.QuoteMeta(
		"orders   http://127.0.0.1:4321/hooks/orders                                            ") + `\d+s\n$`)
	if !want.MatchString(buf.String()) {
		t.Errorf("printed\n%s\nwant\n%s", buf.String(), want)
	}

	if _, err := GetTable(context.Background(), kube.Discovery().RESTClient(), "/apis/hookline.dev/v1alpha1/namespaces/"+ns+"/nothings"); err == nil ||
		!strings.Contains(err.Error(), "getting /apis/hookline.dev/v1alpha1/namespaces/"+ns+"/nothings as a Table") {
		t.Errorf("an unknown resource: %v", err)
	}
}
