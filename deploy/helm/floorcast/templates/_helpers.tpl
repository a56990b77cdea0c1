{{/* The name of every object: <release>-floorcast. */}}
{{- define "floorcast.fullname" -}}
{{ .Release.Name }}-floorcast
{{- end }}

{{/* Labels on every object. */}}
{{- define "floorcast.labels" -}}
app.kubernetes.io/name: floorcast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: floorcast-{{ .Chart.Version }}
{{- end }}

{{/* Labels that select the pod. */}}
{{- define "floorcast.selectorLabels" -}}
app.kubernetes.io/name: floorcast
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret cert-manager fills for the Ingress. */}}
{{- define "floorcast.ingressTlsSecret" -}}
{{ .Release.Name }}-floorcast-ingress-tls
{{- end }}
