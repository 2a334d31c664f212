{{/*
Authenticated/TLS scraping of the exporter's and the operator's /metrics
(values metricsSecurity; docs/helm.md "Authenticated scraping"; the flags are
carbontrack.core.scrapeauth's). Secrets are mounted read-only; the token file is re-read
by the process when the kubelet updates the Secret.
*/}}
{{- define "carbontrack.metricsSecurity.guarded" -}}
{{- $ms := .Values.metricsSecurity -}}
{{- if or $ms.bearerToken.secretName $ms.tls.clientCASecretName -}}true{{- end -}}
{{- end -}}

{{- define "carbontrack.metricsSecurity.scheme" -}}
{{- if .Values.metricsSecurity.tls.secretName -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "carbontrack.metricsSecurity.args" -}}
{{- $ms := .Values.metricsSecurity -}}
{{- if and $ms.tls.clientCASecretName (not $ms.tls.secretName) -}}
{{- fail "metricsSecurity.tls.clientCASecretName (mutual TLS) needs metricsSecurity.tls.secretName: set the serving certificate's Secret too" -}}
{{- end -}}
{{- if $ms.tls.secretName }}
- --tls-cert-file=/etc/carbontrack/metrics-tls/tls.crt
- --tls-key-file=/etc/carbontrack/metrics-tls/tls.key
{{- end }}
{{- if $ms.tls.clientCASecretName }}
- --tls-client-ca-file=/etc/carbontrack/metrics-client-ca/ca.crt
{{- end }}
{{- if $ms.bearerToken.secretName }}
- --auth-token-file=/etc/carbontrack/metrics-token/{{ $ms.bearerToken.key }}
{{- end }}
{{- end -}}

{{- define "carbontrack.metricsSecurity.volumeMounts" -}}
{{- $ms := .Values.metricsSecurity -}}
{{- if $ms.tls.secretName }}
- name: metrics-tls
  mountPath: /etc/carbontrack/metrics-tls
  readOnly: true
{{- end }}
{{- if $ms.tls.clientCASecretName }}
- name: metrics-client-ca
  mountPath: /etc/carbontrack/metrics-client-ca
  readOnly: true
{{- end }}
{{- if $ms.bearerToken.secretName }}
- name: metrics-token
  mountPath: /etc/carbontrack/metrics-token
  readOnly: true
{{- end }}
{{- end -}}

{{- define "carbontrack.metricsSecurity.volumes" -}}
{{- $ms := .Values.metricsSecurity -}}
{{- if $ms.tls.secretName }}
- name: metrics-tls
  secret:
    secretName: {{ $ms.tls.secretName }}
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
{{- if $ms.tls.clientCASecretName }}
- name: metrics-client-ca
  secret:
    secretName: {{ $ms.tls.clientCASecretName }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- if $ms.bearerToken.secretName }}
- name: metrics-token
  secret:
    secretName: {{ $ms.bearerToken.secretName }}
    items: [{key: {{ $ms.bearerToken.key }}, path: {{ $ms.bearerToken.key }}}]
{{- end }}
{{- end -}}

{{/* Pod annotations for annotation-based scrape configs (prometheus.io/scheme). */}}
{{- define "carbontrack.metricsSecurity.annotations" -}}
{{- if .Values.metricsSecurity.tls.secretName }}
prometheus.io/scheme: https
{{- end }}
{{- end -}}

{{/* The scrape side for a ServiceMonitor endpoint / PodMonitor podMetricsEndpoint. */}}
{{- define "carbontrack.metricsSecurity.endpoint" -}}
{{- $ms := .Values.metricsSecurity -}}
scheme: {{ include "carbontrack.metricsSecurity.scheme" . }}
{{- if $ms.tls.secretName }}
tlsConfig:
  ca:
    secret:
      name: {{ $ms.tls.secretName }}
      key: ca.crt
  {{- with $ms.tls.serverName }}
  serverName: {{ . }}
  {{- end }}
  {{- with $ms.tls.prometheusClientSecretName }}
  cert:
    secret:
      name: {{ . }}
      key: tls.crt
  keySecret:
    name: {{ . }}
    key: tls.key
  {{- end }}
{{- end }}
{{- if $ms.bearerToken.secretName }}
authorization:
  type: Bearer
  credentials:
    name: {{ $ms.bearerToken.secretName }}
    key: {{ $ms.bearerToken.key }}
{{- end }}
{{- end -}}

{{/* Probes: HTTPS with TLS (the kubelet does not verify the certificate); a guarded
/metrics is probed through the open /healthz instead (probes carry no credentials). */}}
{{- define "carbontrack.metricsSecurity.probeScheme" -}}
{{- if .Values.metricsSecurity.tls.secretName }}
scheme: HTTPS
{{- end }}
{{- end -}}
