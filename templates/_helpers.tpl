{{/*
Names, labels and the settings the chart derives from the release. Every manifest and the
operator's config file take names from these helpers, so a Service, a Secret or a webhook
configuration can never be called one thing in a manifest and another in config.yaml.
*/}}

{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "kube-changejob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: "<release>-<chart>", or just the release name when it already
contains the chart name (so `helm install kube-changejob ...` gives "kube-changejob").
Truncated to leave room for suffixes such as "-fingerprint-key" within 63 characters.
*/}}
{{- define "kube-changejob.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label ("+" is not allowed in label values). */}}
{{- define "kube-changejob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; they never change after install. */}}
{{- define "kube-changejob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-changejob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every resource. */}}
{{- define "kube-changejob.labels" -}}
helm.sh/chart: {{ include "kube-changejob.chart" . }}
app.kubernetes.io/name: {{ include "kube-changejob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-changejob
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image reference: repository, then the digest if pinned, else the tag (default appVersion). */}}
{{- define "kube-changejob.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "kube-changejob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-changejob.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Names the operator is told about in config.yaml; each defaults to a release-derived name. */}}
{{- define "kube-changejob.webhookServiceName" -}}
{{- default (printf "%s-webhook" (include "kube-changejob.fullname" .)) .Values.config.webhookServiceName }}
{{- end }}

{{- define "kube-changejob.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kube-changejob.fullname" .) }}
{{- end }}

{{- define "kube-changejob.mutatingWebhookConfigurationName" -}}
{{- default (include "kube-changejob.fullname" .) .Values.config.mutatingWebhookConfiguration }}
{{- end }}

{{- define "kube-changejob.validatingWebhookConfigurationName" -}}
{{- default (include "kube-changejob.fullname" .) .Values.config.validatingWebhookConfiguration }}
{{- end }}

{{- define "kube-changejob.webhookCertSecret" -}}
{{- default (printf "%s-webhook-tls" (include "kube-changejob.fullname" .)) .Values.config.webhookCertSecret }}
{{- end }}

{{- define "kube-changejob.fingerprintKeySecret" -}}
{{- default (printf "%s-fingerprint-key" (include "kube-changejob.fullname" .)) .Values.config.fingerprintKeySecret }}
{{- end }}

{{- define "kube-changejob.leaseName" -}}
{{- default (include "kube-changejob.fullname" .) .Values.config.leaseName }}
{{- end }}

{{/*
Certificate mode follows webhook.certManager.enabled. An explicit config.webhookCertMode that
contradicts it would leave the webhook without a usable certificate, so it is an error.
*/}}
{{- define "kube-changejob.webhookCertMode" -}}
{{- $mode := ternary "files" "self-managed" .Values.webhook.certManager.enabled }}
{{- if and .Values.config.webhookCertMode (ne .Values.config.webhookCertMode $mode) }}
{{- fail (printf "config.webhookCertMode %q contradicts webhook.certManager.enabled=%t (which means %q); leave config.webhookCertMode empty" .Values.config.webhookCertMode .Values.webhook.certManager.enabled $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* Container ports, taken from the bind addresses so that they cannot disagree. */}}
{{- define "kube-changejob.webhookPort" -}}
{{- regexFind "[0-9]+$" .Values.config.webhookBindAddress }}
{{- end }}

{{- define "kube-changejob.metricsPort" -}}
{{- regexFind "[0-9]+$" .Values.config.metricsBindAddress }}
{{- end }}

{{- define "kube-changejob.metricsScheme" -}}
{{- ternary "HTTPS" "HTTP" .Values.config.metricsSecure }}
{{- end }}

{{/* Whether the chart renders the webhook Service, configurations and certificates. */}}
{{- define "kube-changejob.webhookEnabled" -}}
{{- if .Values.config.webhookEnabled }}true{{ end }}
{{- end }}

{{/*
The operator's config file. Built as a dict and rendered with toYaml, whose keys come out
sorted, so the same values always give byte-identical output (and the same checksum).
operatorNamespace and podName are left out: the pod gets them from the downward API.
*/}}
{{- define "kube-changejob.config" -}}
{{- $config := omit .Values.config "operatorNamespace" "podName" }}
{{- $_ := set $config "leaseName" (include "kube-changejob.leaseName" .) }}
{{- $_ := set $config "webhookCertMode" (include "kube-changejob.webhookCertMode" .) }}
{{- $_ := set $config "webhookCertSecret" (include "kube-changejob.webhookCertSecret" .) }}
{{- $_ := set $config "webhookServiceName" (include "kube-changejob.webhookServiceName" .) }}
{{- $_ := set $config "mutatingWebhookConfiguration" (include "kube-changejob.mutatingWebhookConfigurationName" .) }}
{{- $_ := set $config "validatingWebhookConfiguration" (include "kube-changejob.validatingWebhookConfigurationName" .) }}
{{- $_ := set $config "fingerprintKeySecret" (include "kube-changejob.fingerprintKeySecret" .) }}
{{- toYaml $config }}
{{- end }}

{{/* Checks of values that JSON Schema cannot express. */}}
{{- define "kube-changejob.validate" -}}
{{- if lt (int .Values.config.apiBurst) (int .Values.config.apiQps) }}
{{- fail (printf "config.apiBurst (%v) must be at least config.apiQps (%v)" .Values.config.apiBurst .Values.config.apiQps) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.config.leaderElection) }}
{{- fail "config.leaderElection=false with replicaCount > 1 would let several pods reconcile and create duplicate Jobs; set replicaCount to 1 or enable leader election" }}
{{- end }}
{{- if and .Values.webhook.certManager.enabled (not .Values.config.webhookEnabled) }}
{{- fail "webhook.certManager.enabled=true needs config.webhookEnabled=true" }}
{{- end }}
{{- end }}

{{/* cert-manager Certificate and Issuer (webhook.certManager.enabled). */}}
{{- define "kube-changejob.certificateName" -}}
{{- printf "%s-webhook" (include "kube-changejob.fullname" .) }}
{{- end }}

{{- define "kube-changejob.issuerName" -}}
{{- printf "%s-selfsigned" (include "kube-changejob.fullname" .) }}
{{- end }}
