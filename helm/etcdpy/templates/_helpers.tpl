{{/*
Names, labels and the pieces several templates share. Other templates (the monitoring ones
included) use these helpers rather than spelling names out.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "etcdpy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name (Bitnami's rule): fullnameOverride; else the release name when it already
contains the chart name; else <release>-<name>. Cut to 63 characters (a DNS label).
*/}}
{{- define "etcdpy.fullname" -}}
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

{{/* The namespace objects go to: namespaceOverride, else the release's. */}}
{{- define "etcdpy.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcdpy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every object carries. */}}
{{- define "etcdpy.labels" -}}
app.kubernetes.io/name: {{ include "etcdpy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ include "etcdpy.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels that select the member pods (never change them: selectors are immutable). */}}
{{- define "etcdpy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcdpy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end -}}

{{/* The label a pod needs to reach the client port when the NetworkPolicy is on. */}}
{{- define "etcdpy.clientLabel" -}}
{{ include "etcdpy.fullname" . }}-client: "true"
{{- end -}}

{{- define "etcdpy.headlessServiceName" -}}
{{- printf "%s-headless" (include "etcdpy.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcdpy.clientServiceName" -}}
{{- include "etcdpy.fullname" . -}}
{{- end -}}

{{- define "etcdpy.envConfigMapName" -}}
{{- printf "%s-env" (include "etcdpy.fullname" .) -}}
{{- end -}}

{{/* The secret holding the root password: auth.rbac.existingSecret or the chart's own. */}}
{{- define "etcdpy.rootPasswordSecretName" -}}
{{- default (include "etcdpy.fullname" .) .Values.auth.rbac.existingSecret -}}
{{- end -}}

{{- define "etcdpy.rootPasswordSecretKey" -}}
{{- default "etcd-root-password" .Values.auth.rbac.existingSecretPasswordKey -}}
{{- end -}}

{{/* The secret holding the JWT signing key: auth.token.privateKey.existingSecret or the chart's own. */}}
{{- define "etcdpy.jwtSecretName" -}}
{{- default (printf "%s-jwt-token" (include "etcdpy.fullname" .)) .Values.auth.token.privateKey.existingSecret -}}
{{- end -}}

{{/* registry/repository:tag; the tag defaults to the chart's appVersion. */}}
{{- define "etcdpy.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "etcdpy.clientScheme" -}}
{{- if or .Values.auth.client.secureTransport .Values.auth.client.useAutoTLS -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "etcdpy.peerScheme" -}}
{{- if or .Values.auth.peer.secureTransport .Values.auth.peer.useAutoTLS -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The client Service's URL, what client commands (hooks, CronJobs, helm test) dial. */}}
{{- define "etcdpy.clientEndpoint" -}}
{{- printf "%s://%s.%s.svc.%s:%v" (include "etcdpy.clientScheme" .) (include "etcdpy.clientServiceName" .) (include "etcdpy.namespace" .) .Values.clusterDomain .Values.service.ports.client -}}
{{- end -}}

{{/* Client TLS is mounted from a secret (not auto TLS, which has no files). */}}
{{- define "etcdpy.clientTLSMounted" -}}
{{- if and .Values.auth.client.secureTransport (not .Values.auth.client.useAutoTLS) -}}true{{- end -}}
{{- end -}}

{{- define "etcdpy.peerTLSMounted" -}}
{{- if and .Values.auth.peer.secureTransport (not .Values.auth.peer.useAutoTLS) -}}true{{- end -}}
{{- end -}}

{{- define "etcdpy.jwtEnabled" -}}
{{- if and .Values.auth.rbac.create .Values.auth.token.enabled (eq .Values.auth.token.type "jwt") -}}true{{- end -}}
{{- end -}}

{{/*
The env list of a client command (scale-in hook, snapshot and defrag CronJobs, helm test):
the client Service URL, client TLS files and the root user's password.
*/}}
{{- define "etcdpy.clientCommandEnv" -}}
- name: ETCDPY_K8S_ENDPOINTS
  value: {{ include "etcdpy.clientEndpoint" . | quote }}
{{- if include "etcdpy.clientTLSMounted" . }}
{{- if .Values.auth.client.caFilename }}
- name: ETCDPY_K8S_CACERT
  value: {{ printf "/etc/etcdpy/tls/client/%s" .Values.auth.client.caFilename | quote }}
{{- end }}
{{- /* etcd 3.4 asks every client for a certificate once it has a trusted CA, not only
with client-cert-auth: the commands present the member's own certificate. */}}
{{- if or .Values.auth.client.enableAuthentication .Values.auth.client.caFilename }}
- name: ETCDPY_K8S_CERT
  value: {{ printf "/etc/etcdpy/tls/client/%s" .Values.auth.client.certFilename | quote }}
- name: ETCDPY_K8S_KEY
  value: {{ printf "/etc/etcdpy/tls/client/%s" .Values.auth.client.certKeyFilename | quote }}
{{- end }}
{{- end }}
{{- if .Values.auth.rbac.create }}
- name: ETCDPY_K8S_USER
  value: root
- name: ETCDPY_K8S_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "etcdpy.rootPasswordSecretName" . }}
      key: {{ include "etcdpy.rootPasswordSecretKey" . }}
{{- end }}
{{- end -}}

{{/* The volumes of a client command: /tmp, and the client TLS secret when there is one. */}}
{{- define "etcdpy.clientCommandVolumes" -}}
- name: tmp
  emptyDir: {}
{{- if include "etcdpy.clientTLSMounted" . }}
- name: client-tls
  secret:
    secretName: {{ .Values.auth.client.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "etcdpy.clientCommandVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "etcdpy.clientTLSMounted" . }}
- name: client-tls
  mountPath: /etc/etcdpy/tls/client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "etcdpy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "etcdpy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The quorum of replicaCount members: floor(n/2)+1. */}}
{{- define "etcdpy.quorum" -}}
{{- add (div (int .Values.replicaCount) 2) 1 -}}
{{- end -}}

{{/* The pod and container security contexts (the "enabled" switch removed). */}}
{{- define "etcdpy.podSecurityContext" -}}
{{- if .Values.podSecurityContext.enabled -}}
{{- toYaml (omit .Values.podSecurityContext "enabled") -}}
{{- end -}}
{{- end -}}

{{- define "etcdpy.containerSecurityContext" -}}
{{- if .Values.containerSecurityContext.enabled -}}
{{- toYaml (omit .Values.containerSecurityContext "enabled") -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets, when set. */}}
{{- define "etcdpy.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Checks of value combinations the schema cannot express; each fails the render with a message
naming the values to set.
*/}}
{{- define "etcdpy.validateValues" -}}
{{- if and .Values.auth.rbac.create (not .Values.auth.rbac.rootPassword) (not .Values.auth.rbac.existingSecret) -}}
{{- fail "auth.rbac.create=true needs auth.rbac.rootPassword or auth.rbac.existingSecret (a generated password would change on every upgrade)" -}}
{{- end -}}
{{- if and (not .Values.auth.rbac.create) (not .Values.auth.rbac.allowNoneAuthentication) -}}
{{- fail "auth.rbac.create=false runs without authentication: set auth.rbac.allowNoneAuthentication=true to accept that, or auth.rbac.create=true" -}}
{{- end -}}
{{- if and (include "etcdpy.jwtEnabled" .) (not .Values.auth.token.privateKey.existingSecret) (not .Values.auth.token.privateKey.key) -}}
{{- fail "auth.token.type=jwt needs auth.token.privateKey.existingSecret or auth.token.privateKey.key (a PEM private key), or auth.token.type=simple" -}}
{{- end -}}
{{- if and (include "etcdpy.clientTLSMounted" .) (not .Values.auth.client.existingSecret) -}}
{{- fail "auth.client.secureTransport=true needs auth.client.existingSecret (a secret with the certificate files), or auth.client.useAutoTLS=true" -}}
{{- end -}}
{{- if and (include "etcdpy.peerTLSMounted" .) (not .Values.auth.peer.existingSecret) -}}
{{- fail "auth.peer.secureTransport=true needs auth.peer.existingSecret (a secret with the certificate files), or auth.peer.useAutoTLS=true" -}}
{{- end -}}
{{- if and .Values.auth.client.enableAuthentication (not .Values.auth.client.secureTransport) -}}
{{- fail "auth.client.enableAuthentication=true (client certificates) needs auth.client.secureTransport=true" -}}
{{- end -}}
{{- if and .Values.auth.client.enableAuthentication (not .Values.auth.client.caFilename) -}}
{{- fail "auth.client.enableAuthentication=true needs auth.client.caFilename (the CA that signs client certificates)" -}}
{{- end -}}
{{- if and .Values.auth.peer.enableAuthentication (not .Values.auth.peer.secureTransport) -}}
{{- fail "auth.peer.enableAuthentication=true needs auth.peer.secureTransport=true" -}}
{{- end -}}
{{- if and .Values.auth.peer.enableAuthentication (not .Values.auth.peer.caFilename) -}}
{{- fail "auth.peer.enableAuthentication=true needs auth.peer.caFilename (the CA that signs peer certificates)" -}}
{{- end -}}
{{- if and .Values.startFromSnapshot.enabled (or (not .Values.startFromSnapshot.existingClaim) (not .Values.startFromSnapshot.snapshotFilename)) -}}
{{- fail "startFromSnapshot.enabled=true needs startFromSnapshot.existingClaim and startFromSnapshot.snapshotFilename" -}}
{{- end -}}
{{- if and .Values.pdb.create .Values.pdb.minAvailable .Values.pdb.maxUnavailable -}}
{{- fail "pdb.minAvailable and pdb.maxUnavailable cannot both be set" -}}
{{- end -}}
{{- end -}}

{{/*
The pod-level settings of a client command's pod (hook Job, CronJobs, helm test): the account,
no token, the security context, pull secrets. Pass the root context.
*/}}
{{- define "etcdpy.clientCommandPodSettings" -}}
serviceAccountName: {{ include "etcdpy.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with (include "etcdpy.podSecurityContext" .) }}
securityContext:
  {{- . | nindent 2 }}
{{- end }}
{{- include "etcdpy.imagePullSecrets" . }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The labels of a client command's pod: the common ones with its own component (never "etcd":
the Services select the members by component) and the client label the NetworkPolicy admits.
Pass (dict "ctx" $ "component" "snapshotter").
*/}}
{{- define "etcdpy.clientCommandPodLabels" -}}
app.kubernetes.io/name: {{ include "etcdpy.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ include "etcdpy.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{ include "etcdpy.clientLabel" .ctx }}
{{- end -}}
