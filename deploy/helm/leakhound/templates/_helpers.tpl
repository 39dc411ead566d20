{{/* Names: "<release>-<chart>" unless the release name already contains the chart's. */}}
{{- define "leakhound.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "leakhound.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "ingest") */}}
{{- define "leakhound.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leakhound.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "leakhound.labels" -}}
{{ include "leakhound.selectorLabels" . }}
app.kubernetes.io/part-of: leakhound
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "leakhound.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "leakhound.storeSecret" -}}
{{- if .Values.store.create -}}
{{- printf "%s-store" (include "leakhound.fullname" .) -}}
{{- else -}}
{{- required "store.existingSecret: name the Secret that holds the store URL (key url), or set store.create=true and store.url" .Values.store.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "leakhound.webhookSecret" -}}
{{- if .Values.serve.webhook.create -}}
{{- printf "%s-webhook" (include "leakhound.fullname" .) -}}
{{- else -}}
{{- required "serve.webhook.existingSecret: name the Secret that holds the bearer token (key token), or set serve.webhook.create=true" .Values.serve.webhook.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The namespaces RBAC is bound in when rbac.scope is namespaced. */}}
{{- define "leakhound.rbacNamespaces" -}}
{{- if not .Values.discovery.namespaces -}}
{{- fail "rbac.scope=namespaced needs discovery.namespaces: the namespaces leakhound may read and act in" -}}
{{- end -}}
{{- toJson .Values.discovery.namespaces -}}
{{- end -}}

{{/* Settings that are checked once, whatever renders. */}}
{{- define "leakhound.validate" -}}
{{- if not (has .Values.rbac.scope (list "cluster" "namespaced")) -}}
{{- fail (printf "rbac.scope must be cluster or namespaced, not %q" .Values.rbac.scope) -}}
{{- end -}}
{{- if not (has .Values.ingest.mode (list "cronjob" "deployment")) -}}
{{- fail (printf "ingest.mode must be cronjob or deployment, not %q" .Values.ingest.mode) -}}
{{- end -}}
{{- if and .Values.store.create (not .Values.store.url) -}}
{{- fail "store.create=true needs store.url (a directory, file:///abs/path or s3://bucket/prefix)" -}}
{{- end -}}
{{- if eq .Values.rbac.scope "namespaced" -}}
{{- $_ := include "leakhound.rbacNamespaces" . -}}
{{- end -}}
{{- end -}}

{{/* The environment every container shares: the store and logging. */}}
{{- define "leakhound.commonEnv" -}}
- name: LEAKHOUND_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "leakhound.storeSecret" . }}
      key: url
- name: LEAKHOUND_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Every key of the store Secret as an environment variable (AWS_*). */}}
{{- define "leakhound.storeEnvFrom" -}}
- secretRef:
    name: {{ include "leakhound.storeSecret" . }}
    optional: true
{{- end -}}

{{/* The policy and safety bounds of actuate and serve. */}}
{{- define "leakhound.policyEnv" -}}
{{- $p := .Values.policy -}}
- name: LEAKHOUND_APPLY
  value: {{ $p.apply | toString | quote }}
- name: LEAKHOUND_DENY_NAMESPACES
  value: {{ (uniq (append ($p.denyNamespaces | default list) .Release.Namespace)) | join "," | quote }}
- name: LEAKHOUND_COOLDOWN
  value: {{ $p.cooldown | quote }}
- name: LEAKHOUND_EVICTION_BUDGET
  value: {{ $p.evictionBudget | int64 | toString | quote }}
- name: LEAKHOUND_EVICTION_WINDOW
  value: {{ $p.evictionWindow | quote }}
- name: LEAKHOUND_MIN_READY_REPLICAS
  value: {{ $p.minReadyReplicas | int64 | toString | quote }}
- name: LEAKHOUND_MAX_TRIGGER_AGE
  value: {{ $p.maxTriggerAge | quote }}
{{- if $p.file }}
- name: LEAKHOUND_POLICY
  value: /etc/leakhound/policy/policy.yaml
{{- end }}
{{- if .Values.ingest.agentTokenSecret }}
- name: LEAKHOUND_AGENT_TOKEN_FILE
  value: /etc/leakhound/agent/token
{{- end }}
{{- end -}}

{{- define "leakhound.policyVolumeMount" -}}
{{- if .Values.policy.file -}}
- name: policy
  mountPath: /etc/leakhound/policy
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "leakhound.policyVolume" -}}
{{- if .Values.policy.file -}}
- name: policy
  configMap:
    name: {{ include "leakhound.fullname" . }}-policy
{{- end -}}
{{- end -}}

{{/* actuate's and the receiver's mounts and volumes: the policy file, and the Go agent's
token (ingest.agentTokenSecret) for captures of agent pods. Empty when neither is set. */}}
{{- define "leakhound.actuateVolumeMounts" -}}
{{ include "leakhound.policyVolumeMount" . }}
{{- if .Values.ingest.agentTokenSecret }}
- name: agent-token
  mountPath: /etc/leakhound/agent
  readOnly: true
{{- end }}
{{- end -}}

{{- define "leakhound.actuateVolumes" -}}
{{ include "leakhound.policyVolume" . }}
{{- if .Values.ingest.agentTokenSecret }}
- name: agent-token
  secret:
    secretName: {{ .Values.ingest.agentTokenSecret }}
    items:
      - { key: token, path: token }
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every pod. */}}
{{- define "leakhound.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
