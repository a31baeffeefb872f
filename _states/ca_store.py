"""State: the system CA store holds what ``update-ca-certificates`` would put there (the
``ca_store`` execution module says why it is not the tool itself)."""

from __future__ import annotations

__virtualname__ = "ca_store"


def __virtual__():
    if "ca_store.plan" not in __salt__ or "ca_store.update" not in __salt__:
        return (False, "the ca_store execution module is not available")
    return __virtualname__


def _said(plan: dict) -> str:
    parts = []
    if plan["added"]:
        parts.append(f"link {', '.join(p[1:] for p in plan['added'])}")
    if plan["removed"]:
        parts.append(f"unlink {', '.join(p[1:] for p in plan['removed'])}")
    if plan["bundle"]:
        parts.append("rewrite the bundle")
    return "; ".join(parts)


def updated(name: str):
    """The links in ``/etc/ssl/certs`` and the bundle ``ca-certificates.crt`` match
    ``/etc/ca-certificates.conf`` and the certificates under ``/usr/local/share/ca-certificates``
    (``name`` is a label). Nothing to do: no change and no hook run.

    SLS Example:

    .. code-block:: yaml

        system-ca-store:
          ca_store.updated:
            - name: system
            - require:
              - file: /usr/local/share/ca-certificates/site.crt
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    plan = __salt__["ca_store.plan"]()
    todo = _said(plan)
    if not todo:
        ret["comment"] = "the CA store is up to date"
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["changes"] = {k: plan[k] for k in ("added", "removed", "bundle") if plan[k]}
        ret["comment"] = f"the CA store would change: {todo}"
        return ret
    done = __salt__["ca_store.update"]()
    after = __salt__["ca_store.plan"]()
    ret["changes"] = {"added": done["added"], "removed": done["removed"], "bundle": plan["bundle"]}
    left = _said(after)
    if left:
        ret["result"] = False
        ret["comment"] = f"the CA store was updated ({done['summary']}) but still needs: {left}"
        return ret
    ret["comment"] = f"the CA store was updated: {done['summary']}"
    if done["hook_errors"]:
        # The tool reports a failing hook and goes on; so does this state, saying which.
        ret["comment"] += " " + " ".join(done["hook_errors"])
    if done["warnings"]:
        ret["comment"] += " " + " ".join(done["warnings"])
    return ret
