{{/*
The chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "binlake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: <release>-<chart>, or <release> when it already
contains the chart name. Truncated so that "<fullname>-<component>" stays within 63
characters.
*/}}
{{- define "binlake.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of one component's resources: (list $ "capture") -> <fullname>-capture.
*/}}
{{- define "binlake.componentName" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "binlake.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "binlake.configMapName" -}}
{{- printf "%s-config" (include "binlake.fullname" .) }}
{{- end }}

{{/*
chart label value.
*/}}
{{- define "binlake.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. Called with (dict "ctx" $ "component" "capture"); component may
be empty for resources every component shares.
*/}}
{{- define "binlake.labels" -}}
helm.sh/chart: {{ include "binlake.chart" .ctx }}
{{ include "binlake.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: binlake
{{- end }}

{{/*
Selector labels (immutable once deployed). Same argument as binlake.labels.
*/}}
{{- define "binlake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "binlake.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "binlake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "binlake.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag (default: appVersion).
*/}}
{{- define "binlake.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Where the config file is mounted in the pods.
*/}}
{{- define "binlake.configDir" -}}/etc/binlake{{- end }}
{{- define "binlake.configFile" -}}{{ include "binlake.configDir" . }}/binlake.toml{{- end }}

{{/*
The environment variable that carries the value of a kafka.clientSecrets setting:
sasl.password -> BINLAKE_KAFKA_SASL_PASSWORD.
*/}}
{{- define "binlake.kafkaSecretEnvName" -}}
{{- printf "BINLAKE_KAFKA_%s" (regexReplaceAll "[^A-Z0-9]" (upper .) "_") }}
{{- end }}

{{/*
The secret environment variables the config file references, as a list of EnvVar objects
(YAML). Fails on a setting given twice, in kafka.client and kafka.clientSecrets or twice
in kafka.clientSecrets (also when two settings map to the same variable name).
*/}}
{{- define "binlake.secretEnv" -}}
{{- $seen := dict }}
{{- with .Values.source.passwordSecret.name }}
- name: BINLAKE_MYSQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.source.passwordSecret.key | quote }}
{{- end }}
{{- range .Values.kafka.clientSecrets }}
{{- if hasKey $.Values.kafka.client .setting }}
{{- fail (printf "kafka: setting %q is in both kafka.client and kafka.clientSecrets; keep one" .setting) }}
{{- end }}
{{- $env := include "binlake.kafkaSecretEnvName" .setting }}
{{- if hasKey $seen $env }}
{{- fail (printf "kafka.clientSecrets: settings %q and %q both use environment variable %s; give each setting once" (get $seen $env) .setting $env) }}
{{- end }}
{{- $_ := set $seen $env .setting }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
{{- end }}
{{- end }}

{{/*
binlake's TOML config file, rendered from the values. Strings are written with toRawJson
(JSON without HTML escaping): a JSON string is a valid TOML basic string (the same
escapes), so any value is quoted correctly, and so is a JSON array of strings. Numbers go through int64 because Helm reads YAML numbers as floats (1e+06).
*/}}
{{- define "binlake.config" -}}
{{- $s := .Values.source -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.capture.settings -}}
{{- $e := .Values.encoding -}}
{{- $sn := .Values.snapshot -}}
# binlake config, rendered by the Helm chart {{ include "binlake.chart" . }} (release {{ .Release.Name }}).
# Check it with: binlake validate FILE. Secrets are not in this file: binlake replaces
# ${NAME} with the environment variable NAME, which the pod sets from a Secret.
name = {{ required "name is required: the logical name of this source (topic prefix)" .Values.name | toRawJson }}

[source]
host = {{ required "source.host is required: the primary's host name" $s.host | toRawJson }}
port = {{ $s.port | int64 }}
user = {{ required "source.user is required: the user binlake connects as" $s.user | toRawJson }}
{{- if $s.passwordSecret.name }}
password = "${BINLAKE_MYSQL_PASSWORD}"
{{- end }}
server_id = {{ $s.serverId | int64 }}
connect_timeout = {{ $s.connectTimeout | toRawJson }}
include = {{ $s.include | toRawJson }}
exclude = {{ $s.exclude | toRawJson }}
exclude_columns = {{ $s.excludeColumns | toRawJson }}
{{- with $s.start }}
start = {{ . | toRawJson }}
{{- end }}

[kafka]
bootstrap_servers = {{ required "kafka.bootstrapServers is required: host:port of the brokers" $k.bootstrapServers | toRawJson }}
request_timeout = {{ $k.requestTimeout | toRawJson }}
{{- if or $k.client $k.clientSecrets }}

[kafka.client]
{{- range $key, $value := $k.client }}
{{ $key | toRawJson }} = {{ $value | toRawJson }}
{{- end }}
{{- range $k.clientSecrets }}
{{ .setting | toRawJson }} = {{ printf "${%s}" (include "binlake.kafkaSecretEnvName" .setting) | toRawJson }}
{{- end }}
{{- end }}

[capture]
partitions = {{ $c.partitions | int64 }}
replication_factor = {{ $c.replicationFactor | int64 }}
tombstones = {{ $c.tombstones }}
transaction_topic = {{ $c.transactionTopic }}
max_batch_rows = {{ $c.maxBatchRows | int64 }}
linger = {{ $c.linger | toRawJson }}
heartbeat_interval = {{ $c.heartbeatInterval | toRawJson }}
max_message_bytes = {{ $c.maxMessageBytes | int64 }}
{{- with $c.deadLetterTopic }}
dead_letter_topic = {{ . | toRawJson }}
{{- end }}
transaction_timeout = {{ $c.transactionTimeout | toRawJson }}
{{- if $c.topicConfigs }}

[capture.topic_configs]
{{- range $key, $value := $c.topicConfigs }}
{{ $key | toRawJson }} = {{ $value | toRawJson }}
{{- end }}
{{- end }}

[snapshot]
mode = {{ $sn.mode | toRawJson }}
chunk_size = {{ $sn.chunkSize | int64 }}

[encoding]
decimal_handling = {{ $e.decimalHandling | toRawJson }}
bigint_unsigned_handling = {{ $e.bigintUnsignedHandling | toRawJson }}
schemas = {{ $e.schemas }}
{{ end }}
