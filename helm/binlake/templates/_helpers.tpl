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
The environment variable that carries the value of a lake.storage option:
aws_secret_access_key -> BINLAKE_LAKE_AWS_SECRET_ACCESS_KEY.
*/}}
{{- define "binlake.lakeEnvName" -}}
{{- printf "BINLAKE_LAKE_%s" (regexReplaceAll "[^A-Z0-9]" (upper .) "_") }}
{{- end }}

{{/*
The components (long-running commands) the chart can deploy, in rendering order.
*/}}
{{- define "binlake.components" -}}capture materialize run{{- end }}

{{/*
What the config file of a component holds beyond name, [source], [encoding] and [http]:
  password: [source] password (connects to the primary)
  kafka:    [kafka]             capture: [capture]     snapshot: [snapshot]
  lake:     [lake]              materialize: [materialize]
Each pod gets exactly the secrets of its own file.
*/}}
{{- define "binlake.sections" -}}
{{- $m := dict "capture" "password kafka capture snapshot" "materialize" "kafka lake materialize" "run" "password snapshot lake" }}
{{- get $m . }}
{{- end }}

{{/*
Whether the component uses section (see binlake.sections): (list "run" "lake") -> "true" or "".
*/}}
{{- define "binlake.uses" -}}
{{- if has (index . 1) (splitList " " (include "binlake.sections" (index . 0))) }}true{{ end }}
{{- end }}

{{/*
The local folder of lake.root (a path or file:///path, trailing "/" removed), or "" when
the root is an object-store URL.
*/}}
{{- define "binlake.lakeLocalPath" -}}
{{- $root := .Values.lake.root }}
{{- if hasPrefix "file://" $root }}
{{- trimPrefix "file://" $root | trimSuffix "/" }}
{{- else if not (contains "://" $root) }}
{{- $root | trimSuffix "/" }}
{{- end }}
{{- end }}

{{/*
Whether some enabled component writes the lake.
*/}}
{{- define "binlake.lakeUsed" -}}
{{- if or .Values.materialize.enabled .Values.run.enabled }}true{{ end }}
{{- end }}

{{/*
The PersistentVolumeClaim the chart creates for a local lake.
*/}}
{{- define "binlake.lakeClaimName" -}}
{{- printf "%s-lake" (include "binlake.fullname" .) }}
{{- end }}

{{/*
Checks across values that the schema cannot express; fails with the values' paths.
Rendered (as nothing) by configmap.yaml, so it runs whatever is enabled.
*/}}
{{- define "binlake.validate" -}}
{{- $v := .Values }}
{{- /* Kafka: a setting given twice, or two settings with one variable name. */}}
{{- $seen := dict }}
{{- range $v.kafka.clientSecrets }}
{{- if hasKey $v.kafka.client .setting }}
{{- fail (printf "kafka: setting %q is in both kafka.client and kafka.clientSecrets; keep one" .setting) }}
{{- end }}
{{- $env := include "binlake.kafkaSecretEnvName" .setting }}
{{- if hasKey $seen $env }}
{{- fail (printf "kafka.clientSecrets: settings %q and %q both use environment variable %s; give each setting once" (get $seen $env) .setting $env) }}
{{- end }}
{{- $_ := set $seen $env .setting }}
{{- end }}
{{- /* Object store: two options with one variable name (aws_region and AWS_REGION). */}}
{{- $seen = dict }}
{{- range $option, $_ := $v.lake.storage }}
{{- $env := include "binlake.lakeEnvName" $option }}
{{- if hasKey $seen $env }}
{{- fail (printf "lake.storage: options %q and %q both use environment variable %s; give each option once" (get $seen $env) $option $env) }}
{{- end }}
{{- $_ := set $seen $env $option }}
{{- end }}
{{- /* Autoscaling. */}}
{{- $m := $v.materialize }}
{{- if and $m.enabled $m.autoscaling.enabled }}
{{- if gt (int64 $m.autoscaling.minReplicas) (int64 $m.autoscaling.maxReplicas) }}
{{- fail (printf "materialize.autoscaling: minReplicas (%d) is above maxReplicas (%d)" (int64 $m.autoscaling.minReplicas) (int64 $m.autoscaling.maxReplicas)) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" ($m.resources | default dict)) }}
{{- fail "materialize.autoscaling: the CPU target is a percentage of the pods' CPU request: set materialize.resources.requests.cpu" }}
{{- end }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes the metrics Services" }}
{{- end }}
{{- /* A local lake. */}}
{{- if include "binlake.lakeUsed" . }}
{{- $path := include "binlake.lakeLocalPath" . }}
{{- $vol := $v.lake.volume }}
{{- if $path }}
{{- if or (eq $path "/") (eq $path "/tmp") (hasPrefix "/tmp/" $path) (eq $path (include "binlake.configDir" .)) (hasPrefix (printf "%s/" (include "binlake.configDir" .)) $path) }}
{{- fail (printf "lake.root: %q cannot hold the lake: / , /tmp and %s are taken; use a folder of its own such as /var/lib/binlake/lake" $v.lake.root (include "binlake.configDir" .)) }}
{{- end }}
{{- if and (eq $vol.type "existingClaim") (not $vol.existingClaim) }}
{{- fail "lake.volume.existingClaim: name the PersistentVolumeClaim (lake.volume.type is existingClaim)" }}
{{- end }}
{{- $workers := ternary (int64 $m.autoscaling.maxReplicas) (int64 $m.replicas) (and $m.autoscaling.enabled true) }}
{{- if and $m.enabled (gt $workers 1) }}
{{- if eq $vol.type "emptyDir" }}
{{- fail (printf "lake.root %q is a local folder on an emptyDir, and materialize may run %d pods: each would write a lake of its own. Use an object store (s3://…) or a ReadWriteMany claim (lake.volume), or one replica" $v.lake.root $workers) }}
{{- end }}
{{- if and (eq $vol.type "pvc") (ne $vol.accessMode "ReadWriteMany") }}
{{- fail (printf "lake.volume.accessMode: %s cannot be shared by %d materialize pods; use ReadWriteMany, an object store (s3://…) or one replica" $vol.accessMode $workers) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The secret environment variables of one component's config file, as a list of EnvVar
objects (YAML). Called with (dict "ctx" $ "component" "capture").
*/}}
{{- define "binlake.secretEnv" -}}
{{- $v := .ctx.Values }}
{{- $comp := .component }}
{{- if and (include "binlake.uses" (list $comp "password")) $v.source.passwordSecret.name }}
- name: BINLAKE_MYSQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.source.passwordSecret.name | quote }}
      key: {{ $v.source.passwordSecret.key | quote }}
{{- end }}
{{- if and (include "binlake.uses" (list $comp "materialize")) $v.materialize.settings.staticMembership }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- if include "binlake.uses" (list $comp "kafka") }}
{{- range $v.kafka.clientSecrets }}
- name: {{ include "binlake.kafkaSecretEnvName" .setting }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
{{- end }}
{{- end }}
{{- if include "binlake.uses" (list $comp "lake") }}
{{- range $option, $src := $v.lake.storage }}
- name: {{ include "binlake.lakeEnvName" $option }}
{{- if hasKey $src "value" }}
  value: {{ $src.value | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ $src.secretName | quote }}
      key: {{ $src.secretKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The TOML config file of one component, rendered from the values. Called with
(dict "ctx" $ "component" "capture"). Strings are written with toRawJson (JSON without
HTML escaping): a JSON string is a valid TOML basic string (the same escapes), so any
value is quoted correctly, and so is a JSON array of strings. Numbers go through int64
because Helm reads YAML numbers as floats (1e+06).
*/}}
{{- define "binlake.config" -}}
{{- $ctx := .ctx -}}
{{- $comp := .component -}}
{{- $v := $ctx.Values -}}
{{- $s := $v.source -}}
{{- $k := $v.kafka -}}
{{- $c := $v.capture.settings -}}
{{- $e := $v.encoding -}}
{{- $sn := $v.snapshot -}}
{{- $l := $v.lake -}}
# The config of `binlake {{ $comp }}`, rendered by the Helm chart {{ include "binlake.chart" $ctx }} (release {{ $ctx.Release.Name }}).
# Check it with: binlake validate FILE. Secrets are not in this file: binlake replaces
# ${NAME} with the environment variable NAME, which the pod sets from a Secret.
name = {{ required "name is required: the logical name of this source (topic prefix)" $v.name | toRawJson }}
shutdown_grace = {{ $v.shutdownGrace | toRawJson }}

[source]
host = {{ required "source.host is required: the primary's host name" $s.host | toRawJson }}
port = {{ $s.port | int64 }}
user = {{ required "source.user is required: the user binlake connects as" $s.user | toRawJson }}
{{- if and (include "binlake.uses" (list $comp "password")) $s.passwordSecret.name }}
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
{{- if ne $s.tls.mode "disabled" }}
tls = {{ $s.tls.mode | toRawJson }}
{{- if $s.tls.secretName }}
tls_ca = {{ printf "/etc/binlake/source-tls/%s" $s.tls.caKey | toRawJson }}
{{- if $s.tls.certKey }}
tls_cert = {{ printf "/etc/binlake/source-tls/%s" $s.tls.certKey | toRawJson }}
tls_key = {{ printf "/etc/binlake/source-tls/%s" $s.tls.keyKey | toRawJson }}
{{- end }}
{{- end }}
{{- end }}
{{- with $s.keyColumns }}

[source.key_columns]
{{- range $table, $columns := . }}
{{ $table | toRawJson }} = {{ $columns | toRawJson }}
{{- end }}
{{- end }}
{{- if include "binlake.uses" (list $comp "kafka") }}

[kafka]
bootstrap_servers = {{ required (printf "kafka.bootstrapServers is required for %s: host:port of the brokers" $comp) $k.bootstrapServers | toRawJson }}
request_timeout = {{ $k.requestTimeout | toRawJson }}
topic_name = {{ $k.topicName | toRawJson }}
{{- with $k.topics }}

[kafka.topics]
{{- range $table, $topic := . }}
{{ $table | toRawJson }} = {{ $topic | toRawJson }}
{{- end }}
{{- end }}
{{- if or $k.client $k.clientSecrets }}

[kafka.client]
{{- range $key, $value := $k.client }}
{{ $key | toRawJson }} = {{ $value | toRawJson }}
{{- end }}
{{- range $k.clientSecrets }}
{{ .setting | toRawJson }} = {{ printf "${%s}" (include "binlake.kafkaSecretEnvName" .setting) | toRawJson }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "binlake.uses" (list $comp "capture") }}

[capture]
partitions = {{ $c.partitions | int64 }}
replication_factor = {{ $c.replicationFactor | int64 }}
tombstones = {{ $c.tombstones }}
transaction_topic = {{ $c.transactionTopic }}
max_batch_rows = {{ $c.maxBatchRows | int64 }}
linger = {{ $c.linger | toRawJson }}
catch_up_linger = {{ $c.catchUpLinger | toRawJson }}
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
{{- end }}
{{- if include "binlake.uses" (list $comp "snapshot") }}

[snapshot]
mode = {{ $sn.mode | toRawJson }}
chunk_size = {{ $sn.chunkSize | int64 }}
readers = {{ $sn.readers | int64 }}
reread_on_schema_change = {{ $sn.rereadOnSchemaChange }}
{{- end }}

[encoding]
decimal_handling = {{ $e.decimalHandling | toRawJson }}
bigint_unsigned_handling = {{ $e.bigintUnsignedHandling | toRawJson }}
schemas = {{ $e.schemas }}
{{- if include "binlake.uses" (list $comp "lake") }}

[lake]
root = {{ required (printf "lake.root is required for %s: s3://bucket/prefix (or gs://, az://), or a local folder" $comp) $l.root | toRawJson }}
buckets = {{ $l.buckets | int64 }}
flush_interval = {{ $l.flushInterval | toRawJson }}
max_batch_rows = {{ $l.maxBatchRows | int64 }}
max_batch_bytes = {{ $l.maxBatchBytes | int64 }}
before_images = {{ $l.beforeImages }}
maintenance_interval = {{ $l.maintenanceInterval | toRawJson }}
compact_min_files = {{ $l.compactMinFiles | int64 }}
vacuum_retention = {{ $l.vacuumRetention | toRawJson }}
replica_mode = {{ $l.replicaMode | toRawJson }}
index_dir = {{ $l.indexDir | toRawJson }}
index_cache_mb = {{ $l.indexCacheMb | int64 }}
max_deleted_fraction = {{ $l.maxDeletedFraction | float64 }}
{{- if $l.storage }}

[lake.storage]
{{- range $option, $_ := $l.storage }}
{{ $option | toRawJson }} = {{ printf "${%s}" (include "binlake.lakeEnvName" $option) | toRawJson }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (include "binlake.uses" (list $comp "materialize")) (or $v.materialize.settings.group $v.materialize.settings.staticMembership) }}

[materialize]
{{- with $v.materialize.settings.group }}
group = {{ . | toRawJson }}
{{- end }}
{{- if $v.materialize.settings.staticMembership }}
instance_id = "${POD_NAME}"
{{- end }}
{{- end }}

[http]
listen = {{ printf "0.0.0.0:%d" ($v.http.port | int64) | toRawJson }}
{{ end }}

{{/*
The Deployment of one component. Called with (dict "ctx" $ "component" "capture").

capture and run: exactly one replica (not configurable) and Recreate, so an update stops
the old pod before the new one starts: one writer per source. If two ever run at once
anyway (e.g. a pod left running on a partitioned node while its replacement starts), the
safety net for capture is Kafka transactional fencing (both use the transactional id
derived from `name`; the newer producer fences the older one, whose next commit fails);
for run, one replica and Recreate are the guard: keep one run per source and lake.
materialize: replicas workers (or the HorizontalPodAutoscaler's
count) in one consumer group; RollingUpdate, except Recreate when the lake is on a claim
(a ReadWriteOnce volume cannot be attached on two nodes at once).
*/}}
{{- define "binlake.deployment" -}}
{{- $ctx := .ctx }}
{{- $comp := .component }}
{{- $v := $ctx.Values }}
{{- $c := index $v $comp }}
{{- $lakePath := "" }}
{{- if include "binlake.uses" (list $comp "lake") }}
{{- $lakePath = include "binlake.lakeLocalPath" $ctx }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "binlake.componentName" (list $ctx $comp) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "binlake.labels" (dict "ctx" $ctx "component" $comp) | nindent 4 }}
spec:
  {{- if eq $comp "materialize" }}
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicas | int64 }}
  {{- end }}
  strategy:
    {{- if and $lakePath (ne $v.lake.volume.type "emptyDir") }}
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
    {{- end }}
  {{- else }}
  replicas: 1
  strategy:
    type: Recreate
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "binlake.selectorLabels" (dict "ctx" $ctx "component" $comp) | nindent 6 }}
  template:
    metadata:
      annotations:
        # Rolls the pods when their rendered config changes. (A changed Secret does not:
        # restart the Deployment after rotating a password.)
        checksum/config: {{ include "binlake.config" (dict "ctx" $ctx "component" $comp) | sha256sum }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "binlake.labels" (dict "ctx" $ctx "component" $comp) | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "binlake.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds | int64 }}
      containers:
        - name: {{ $comp }}
          image: {{ include "binlake.image" $ctx | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --log-format
            - {{ $v.logFormat | quote }}
            - {{ $comp }}
            - --config
            - {{ printf "%s/%s.toml" (include "binlake.configDir" $ctx) $comp | quote }}
          ports:
            - name: http
              containerPort: {{ $v.http.port | int64 }}
              protocol: TCP
          env:
            - name: RUST_LOG
              value: {{ $v.logLevel | quote }}
            {{- with include "binlake.secretEnv" (dict "ctx" $ctx "component" $comp) | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $c.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          {{- with $c.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $c.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $c.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: config
              mountPath: {{ include "binlake.configDir" $ctx }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if $lakePath }}
            - name: lake
              mountPath: {{ $lakePath | quote }}
            {{- end }}
            {{- if and $v.source.tls.secretName (ne $v.source.tls.mode "disabled") }}
            - name: source-tls
              mountPath: /etc/binlake/source-tls
              readOnly: true
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "binlake.configMapName" $ctx }}
            items:
              - key: {{ $comp }}.toml
                path: {{ $comp }}.toml
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit | quote }}
        {{- if $lakePath }}
        - name: lake
          {{- if eq $v.lake.volume.type "emptyDir" }}
          emptyDir:
            sizeLimit: {{ $v.lake.volume.size | quote }}
          {{- else }}
          persistentVolumeClaim:
            claimName: {{ ternary (include "binlake.lakeClaimName" $ctx) $v.lake.volume.existingClaim (eq $v.lake.volume.type "pvc") | quote }}
          {{- end }}
        {{- end }}
        {{- if and $v.source.tls.secretName (ne $v.source.tls.mode "disabled") }}
        - name: source-tls
          secret:
            secretName: {{ $v.source.tls.secretName | quote }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
