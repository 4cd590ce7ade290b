// Test-only: answers IAM authorization questions for the moto launcher (../moto_iam.py), one JSON
// object per line on stdin, one answer per line on stdout. Each question carries the request
// (principal, action, resource ARN, context keys) and the caller's identity policies (plus, where
// the test gives them, permission boundaries and a resource policy); iam-simulate evaluates them
// the way IAM does (explicit deny, NotResource, every condition operator).
import { createInterface } from 'node:readline'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const q = JSON.parse(line)
    const simulation = {
      request: {
        principal: q.principal,
        action: q.action,
        resource: { resource: q.resource, accountId: q.account },
        contextVariables: q.context || {}
      },
      identityPolicies: q.policies.map((policy, i) => ({ name: `policy${i}`, policy })),
      // SCPs, when a test gives them: one level (the account's), beside AWS's default
      // FullAWSAccess, which every level needs for anything to be allowed.
      serviceControlPolicies: q.scps
        ? [
            {
              orgIdentifier: q.account,
              policies: [
                {
                  name: 'FullAWSAccess',
                  policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }
                },
                ...q.scps.map((policy, i) => ({ name: `scp${i}`, policy }))
              ]
            }
          ]
        : [],
      resourceControlPolicies: [],
      permissionBoundaryPolicies: q.boundaries
        ? q.boundaries.map((policy, i) => ({ name: `boundary${i}`, policy }))
        : undefined,
      resourcePolicy: q.resourcePolicy || undefined
    }
    const r = await runSimulation(simulation, {})
    if (r.resultType === 'error') {
      answer = { result: 'Error', error: r.errors.message, errors: r.errors }
    } else {
      answer = { result: r.overallResult }
    }
  } catch (e) {
    answer = { result: 'Error', error: String(e && e.stack ? e.stack : e) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
