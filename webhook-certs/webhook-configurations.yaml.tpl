# Webhook configurations for an operator running outside the cluster. render.sh replaces
# __WEBHOOK_URL__ (https://<address the API server can reach>:9443) and __CA_BUNDLE__ (base64
# of out/ca.crt). Names differ from the Helm chart's so both can never be confused.
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: kube-changejob-dev
  labels:
    app.kubernetes.io/name: kube-changejob
    app.kubernetes.io/component: webhook-dev
webhooks:
  - name: mutate.changetriggeredjobs.triggers.changejob.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    # Fail, like the chart: a stopped local operator then blocks ChangeTriggeredJob writes
    # instead of letting unvalidated objects in. Delete these configurations when done.
    failurePolicy: Fail
    matchPolicy: Equivalent
    timeoutSeconds: 10
    reinvocationPolicy: Never
    clientConfig:
      url: __WEBHOOK_URL__/mutate
      caBundle: __CA_BUNDLE__
    rules:
      - apiGroups: [triggers.changejob.dev]
        apiVersions: [v1alpha]
        operations: [CREATE, UPDATE]
        resources: [changetriggeredjobs]
        scope: Namespaced
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: kube-changejob-dev
  labels:
    app.kubernetes.io/name: kube-changejob
    app.kubernetes.io/component: webhook-dev
webhooks:
  - name: validate.changetriggeredjobs.triggers.changejob.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Fail
    matchPolicy: Equivalent
    timeoutSeconds: 10
    clientConfig:
      url: __WEBHOOK_URL__/validate
      caBundle: __CA_BUNDLE__
    rules:
      - apiGroups: [triggers.changejob.dev]
        apiVersions: [v1alpha]
        operations: [CREATE, UPDATE]
        resources: [changetriggeredjobs]
        scope: Namespaced
