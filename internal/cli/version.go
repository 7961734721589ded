package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/version"
)

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and, if reachable, the cluster's",
		Long: `Print the version of kubectl hookline and, when the API server of the
kubeconfig's context can be reached, its Kubernetes version and whether it
serves the Hookline API.`,
		Example: `  kubectl hookline version
  kubectl hookline version --context production`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.out, "Client Version: %s\n", version.Version)
			fmt.Fprintf(a.out, "Server Version: %s\n", a.serverVersion())
			return nil
		},
	}
}

// serverVersion describes the API server, or why it could not be asked:
// version succeeds without a cluster.
func (a *app) serverVersion() string {
	kube, err := a.kubeClient()
	if err != nil {
		return "unknown (" + oneLine(err.Error()) + ")"
	}
	info, err := kube.Discovery().ServerVersion()
	if err != nil {
		return "unreachable (" + oneLine(err.Error()) + ")"
	}
	api := hooklinev1.GroupVersion.String()
	if _, err := kube.Discovery().ServerResourcesForGroupVersion(api); err != nil {
		return info.GitVersion + ", Hookline API " + api + " not served"
	}
	return info.GitVersion + ", Hookline API " + api + " served"
}
