package dispatcher

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestInstanceLeaseAdvertisesIngestURL checks the annotation kubectl
// hookline reads to reach a dispatcher that runs outside pods: set on the
// Lease's creation and renewal when --advertise-ingest-url is given,
// removed when it no longer is, absent otherwise.
func TestInstanceLeaseAdvertisesIngestURL(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	d := &Dispatcher{kube: kube, opts: Options{Namespace: "hookline-system", Name: "default", Instance: "default-0",
		LeaseDuration: 30 * time.Second, Clock: clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)),
		AdvertiseIngestURL: "http://127.0.0.1:41234"}}
	name := InstanceLeaseName("default", "default-0")
	annotation := func() (string, bool) {
		t.Helper()
		l, err := kube.CoordinationV1().Leases("hookline-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, ok := l.Annotations[hooklinev1.AnnotationIngestURL]
		return v, ok
	}

	for _, step := range []struct {
		advertise string
		want      string
	}{
		{"http://127.0.0.1:41234", "http://127.0.0.1:41234"}, // created
		{"http://127.0.0.1:41234", "http://127.0.0.1:41234"}, // renewed
		{"", ""}, // restarted without the flag
	} {
		d.opts.AdvertiseIngestURL = step.advertise
		if err := d.renewLease(ctx, name); err != nil {
			t.Fatal(err)
		}
		if got, ok := annotation(); got != step.want || ok != (step.want != "") {
			t.Errorf("with --advertise-ingest-url %q, the Lease's annotation is %q (present %v)", step.advertise, got, ok)
		}
	}
}
