{{- define "mcp-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-gateway.fullname" -}}
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

{{/* Labels of every object but the component, which each adds. */}}
{{- define "mcp-gateway.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mcp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mcp-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mcp-gateway.labels" -}}
{{ include "mcp-gateway.commonLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "mcp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mcp-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mcp-gateway.sessionSecretName" -}}
{{- default (printf "%s-session" (include "mcp-gateway.fullname" .)) .Values.session.existingSecret -}}
{{- end -}}

{{/* Names of the bundled Redis (charts/redis computes the same). */}}
{{- define "mcp-gateway.redis.fullname" -}}
{{- printf "%s-redis" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-gateway.demo.fullname" -}}
{{- printf "%s-demo" (include "mcp-gateway.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where the Redis password comes from: (secret name, key), or nothing. */}}
{{- define "mcp-gateway.redis.passwordSecret" -}}
{{- if .Values.redis.enabled -}}
{{- default (include "mcp-gateway.redis.fullname" .) .Values.redis.auth.existingSecret }} {{ .Values.redis.auth.existingSecretKey -}}
{{- else if .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecret }} {{ .Values.externalRedis.existingSecretKey -}}
{{- end -}}
{{- end -}}

{{/* "url", "sentinel", "cluster" or "" (no Redis): how the gateway reaches Redis. */}}
{{- define "mcp-gateway.redis.mode" -}}
{{- if .Values.redis.enabled -}}url
{{- else if .Values.externalRedis.sentinel.masterName -}}sentinel
{{- else if .Values.externalRedis.cluster.nodes -}}cluster
{{- else if .Values.externalRedis.url -}}url
{{- end -}}
{{- end -}}

{{/* The Redis URL (url mode); $(REDIS_PASSWORD) is expanded by Kubernetes from the env var of that name. */}}
{{- define "mcp-gateway.redis.url" -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne (include "mcp-gateway.redis.passwordSecret" .) "") -}}
{{- if ne (include "mcp-gateway.redis.mode" .) "url" -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s%s:6379/0" $auth (include "mcp-gateway.redis.fullname" .) -}}
{{- else -}}
{{- $u := urlParse .Values.externalRedis.url -}}
{{- printf "%s://%s%s%s" $u.scheme $auth $u.host $u.path -}}
{{- end -}}
{{- end -}}

{{/* The gateway configuration file: chart-managed keys over .Values.config. */}}
{{- define "mcp-gateway.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (merge (dict "host" "0.0.0.0" "port" (int .Values.gateway.port) "trustProxy" .Values.gateway.trustProxy) (default (dict) (get $cfg "listen"))) -}}
{{- $_ = set $cfg "metrics" (merge (dict "host" "0.0.0.0" "port" (int .Values.gateway.metricsPort)) (default (dict) (get $cfg "metrics"))) -}}
{{- $session := merge (dict "secretFile" "/var/run/secrets/mcp-gateway/session-key") (default (dict) (get $cfg "session")) -}}
{{- $_ = set $cfg "session" (omit $session "secret") -}}
{{- $_ = set $cfg "shutdown" (dict "grace" (printf "%ds" (int .Values.gateway.shutdownGraceSeconds))) -}}
{{- $mode := include "mcp-gateway.redis.mode" . -}}
{{- $redis := default (dict) (get $cfg "redis") -}}
{{- if eq $mode "sentinel" -}}
{{- $_ = set $cfg "redis" (merge (dict "sentinels" .Values.externalRedis.sentinel.nodes "name" .Values.externalRedis.sentinel.masterName "db" (int .Values.externalRedis.sentinel.db)) $redis) -}}
{{- else if eq $mode "cluster" -}}
{{- $_ = set $cfg "redis" (merge (dict "cluster" .Values.externalRedis.cluster.nodes) $redis) -}}
{{- else if eq $mode "url" -}}
{{- /* the URL itself comes from MCPGW_REDIS_URL (it may hold the password) */ -}}
{{- else -}}
{{- $_ = unset $cfg "redis" -}}
{{- end -}}
{{- $servers := deepCopy (default (dict) .Values.config.servers) -}}
{{- if .Values.demo.enabled -}}
{{- $_ = set $servers "demo" (dict "upstreams" (list (dict "url" (printf "http://%s:%d/mcp" (include "mcp-gateway.demo.fullname" .) (int .Values.demo.port))))) -}}
{{- end -}}
{{- $_ = set $cfg "servers" $servers -}}
{{- toYaml $cfg -}}
{{- end -}}
