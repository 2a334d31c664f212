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
{{- with $op.mlflowTrackingUri }}
- --mlflow-tracking-uri={{ . }}
{{- end }}
{{- if $op.kueueAdmission.enabled }}
- --kueue-admission-check
{{- end }}
{{- if $op.longRunning.annotate }}
- --annotate-long-running
{{- end }}
{{- with $op.deferral.zone }}
- --deferral-zone={{ . }}
{{- with $.Values.exporter.intensity }}
{{- if and .provider (ne .provider "static") }}
- --intensity-provider={{ .provider }}
{{- end }}
{{- with .baseUrl }}
- --intensity-base-url={{ . }}
{{- end }}
{{- range $zoneKey, $wtRegion := .watttimeRegions }}
- --watttime-region={{ $zoneKey }}={{ $wtRegion }}
{{- end }}
{{- end }}
{{- end }}
- --listen=0.0.0.0:{{ $op.port }}
{{- range $op.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
The operator waits one Prometheus scrape interval (operator.scrapeIntervalSeconds, passed as
--scrape-interval) past a Job's end for the final scrape. A ServiceMonitor/PodMonitor rendered
here with a longer interval would let it account before that scrape, so a mismatch fails the
render. Every form the values schema allows (<n>ms, s, m or h) is checked.
*/}}
{{- define "carbontrack.operator.checkScrapeInterval" -}}
{{- $op := .Values.operator -}}
{{- range $kind, $m := dict "serviceMonitor" .Values.serviceMonitor "podMonitor" .Values.podMonitor -}}
{{- if $m.enabled -}}
{{- $iv := toString $m.interval -}}
{{- $secs := -1.0 -}}
{{- if regexMatch "^[0-9]+ms$" $iv -}}
{{- $secs = divf (trimSuffix "ms" $iv | float64) 1000 -}}
{{- else if regexMatch "^[0-9]+s$" $iv -}}
{{- $secs = trimSuffix "s" $iv | float64 -}}
{{- else if regexMatch "^[0-9]+m$" $iv -}}
{{- $secs = mulf (trimSuffix "m" $iv | float64) 60 -}}
{{- else if regexMatch "^[0-9]+h$" $iv -}}
{{- $secs = mulf (trimSuffix "h" $iv | float64) 3600 -}}
{{- end -}}
{{- if and (ge $secs 0.0) (ne $secs (float64 $op.scrapeIntervalSeconds)) -}}
{{- fail (printf "%s.interval is %s but operator.scrapeIntervalSeconds is %v: set both to Prometheus' scrape interval of the exporters (the operator waits one interval past a Job's end for the final scrape)" $kind $iv $op.scrapeIntervalSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
