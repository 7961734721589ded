{{/*
The chart's name, overridable with nameOverride.
*/}}
{{- define "hookline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of the release's object names: the release name when it already
holds the chart's name ("hookline" gives hookline-manager), otherwise
<release>-<chart>. Cut short so the longest suffix still fits a 63-character
Service name.
*/}}
{{- define "hookline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Names of the manager's objects.
*/}}
{{- define "hookline.managerName" -}}
{{- printf "%s-manager" (include "hookline.fullname" .) }}
{{- end }}

{{- define "hookline.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "hookline.fullname" .) }}
{{- end }}

{{- define "hookline.metricsServiceName" -}}
{{- printf "%s-manager-metrics" (include "hookline.fullname" .) }}
{{- end }}

{{/*
The manager's ServiceAccount: created under the manager's name unless
serviceAccount.name says otherwise; an existing one must be named when the
chart does not create it.
*/}}
{{- define "hookline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hookline.managerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hookline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object of the release. app.kubernetes.io/version is the
version of the image that runs, which image.tag may override.
*/}}
{{- define "hookline.labels" -}}
helm.sh/chart: {{ include "hookline.chart" . }}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookline
{{- end }}

{{- define "hookline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector of the manager's pods. The Deployment's selector is immutable, so
it holds only labels that never change.
*/}}
{{- define "hookline.managerSelectorLabels" -}}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{/*
The image of the manager, and of every dispatcher that does not name its
own: a digest, when given, pins it whatever the tag says.
*/}}
{{- define "hookline.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The ingest URL of the default dispatcher: the Service the manager renders
for a WebhookDispatcher is named <name>-dispatcher, port 8080.
*/}}
{{- define "hookline.ingestURL" -}}
{{- printf "http://default-dispatcher.%s.svc:8080" .Release.Namespace }}
{{- end }}
