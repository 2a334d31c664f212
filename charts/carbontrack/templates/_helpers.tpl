{{/* Names and labels shared by every template. */}}

{{- define "carbontrack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carbontrack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "carbontrack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "carbontrack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbontrack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels; pass (dict "root" $ "component" "exporter"). */}}
{{- define "carbontrack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carbontrack.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image reference; pass (dict "image" .Values.x.image "root" $). A digest pins. */}}
{{- define "carbontrack.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "carbontrack.exporter.fullname" -}}
{{- printf "%s-exporter" (include "carbontrack.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carbontrack.operator.fullname" -}}
{{- printf "%s-operator" (include "carbontrack.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carbontrack.exporter.serviceAccountName" -}}
{{- if .Values.exporter.serviceAccount.create -}}
{{- default (include "carbontrack.exporter.fullname" .) .Values.exporter.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.exporter.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "carbontrack.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "carbontrack.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "carbontrack.exporter.priorityClassName" -}}
{{- default (printf "%s-node-critical" (include "carbontrack.fullname" .)) .Values.exporter.priorityClass.name -}}
{{- end -}}

{{/* env entries from Secrets; pass the list of {env, secretName, secretKey}. */}}
{{- define "carbontrack.secretEnv" -}}
{{- range . }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end -}}

{{/* Operator command line (`carbontrack operator --help`). */}}
{{- define "carbontrack.operator.args" -}}
{{- $op := .Values.operator -}}
- operator
- --prometheus-url={{ $op.prometheusUrl }}
{{- range $op.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- if not $op.watchNamespaces }}
- --all-namespaces
{{- end }}
{{- if $op.peering.enabled }}
- --peering={{ $op.peering.name }}
{{- else }}
- --standalone
{{- end }}
- --scrape-interval={{ $op.scrapeIntervalSeconds }}
{{- if not $op.finalizer }}
- --no-finalizer
{{- end }}
{{- if not $op.enforcement }}
- --no-enforcement
{{- end }}
- --listen=0.0.0.0:{{ $op.port }}
{{- range $op.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
