{{/* Names: the release's full name, trimmed to what object names allow. */}}
{{- define "tfjob-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tfjob-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tfjob-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tfjob-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tfjob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfjob-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* On every object, so `kubectl get all,... -l app.kubernetes.io/instance=<release>` finds them. */}}
{{- define "tfjob-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tfjob-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tfjob-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Peering is on when asked for, or as soon as there is more than one replica. */}}
{{- define "tfjob-operator.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "tfjob-operator.peeringName" -}}
{{- default (include "tfjob-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* Pools known to have no GPUs, sorted (range over a map is sorted by key). */}}
{{- define "tfjob-operator.cpuOnlyPools" -}}
{{- $pools := list }}
{{- range $name, $pool := .Values.nodePools.known }}
{{- if and (hasKey $pool "gpu") (not $pool.gpu) }}
{{- $pools = append $pools $name }}
{{- end }}
{{- end }}
{{- toJson $pools }}
{{- end }}

{{/*
The namespaced rules, the same in the ClusterRole and in each Role: exactly the calls the
operator makes (kopf's watch of jobs; the informers' lists and watches of pods and Services;
the passes' creates, deletes and status writes; Events).
*/}}
{{- define "tfjob-operator.jobRules" -}}
# kopf lists and watches jobs; a pass reads its job from that watch, never by GET. A finished
# job whose runPolicy.ttlSecondsAfterFinished ran out is deleted.
- apiGroups: [tfjob.dev]
  resources: [tensorflowjobs]
  verbs: [list, watch, delete]
# The status is written once per pass, only when it changed, as a merge patch.
- apiGroups: [tfjob.dev]
  resources: [tensorflowjobs/status]
  verbs: [patch]
# Every child names its job as owner with blockOwnerDeletion: where the
# OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift), that takes update on
# the job's finalizers. The operator never writes them.
- apiGroups: [tfjob.dev]
  resources: [tensorflowjobs/finalizers]
  verbs: [update]
# The operator's informer lists and watches the jobs' pods (by label); passes create and
# delete them.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
# One headless Service per job; never deleted by the operator (garbage collection does it).
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create]
# An Event on every state transition of a job.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# MPI (Horovod) jobs: a hostfile ConfigMap each, listed and watched (by label, metadata
# alone) so a pass sees it deleted or held by another object, and created when missing; and an
# SSH key Secret each, never read: the API server generates its name (on the job's status), so
# nobody else can create it first. Garbage collection deletes both with the job.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, watch, create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- if .Values.gangScheduling.enabled }}
# Gang scheduling: a PodGroup per attempt of a distributed job, created before its pods. When
# the name is taken it is read, and joined only if it is the job's (its owner and policy);
# garbage collection deletes it with the job.
- apiGroups: [scheduling.k8s.io]
  resources: [podgroups]
  verbs: [create, get]
{{- end }}
{{- end }}
