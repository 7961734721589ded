package playground

// PluginExample is a kubectl hookline command that works in the playground
// exactly as written, with the kubeconfig it prints (whose namespace is
// DemoNamespace), and what it shows.
type PluginExample struct {
	// Command is the command line, as a user types it.
	Command string
	// Shows says what it does there, in a few words.
	Shows string
}

// PluginExamples are the kubectl hookline commands the README's "Try it
// locally" lists and the playground prints once ready; the playground's
// test runs every one of them. The ServiceAccounts they name are created by
// the playground (Producer, Operator).
func PluginExamples() []PluginExample {
	return []PluginExample{
		{"kubectl hookline status", "both subscriptions' health"},
		{"kubectl hookline status flaky -o wide", "one subscription, with its counts and messages"},
		{`kubectl hookline send --service-account ` + ProducerName + ` --type order.created --data '{"order":1004,"total":12}'`, "publishes an event"},
		{"kubectl hookline send --service-account " + OperatorName + " --to " + OrdersSubscription, "a test delivery, answered at once"},
		{"kubectl hookline replay " + FlakySubscription + " --since 1h --service-account " + OperatorName, "replays flaky's dead letters, which fail again (exit 3)"},
		{"kubectl hookline rotate " + SigningSecretName, "rotates the signing key; deliveries keep verifying"},
	}
}
