"""Titles and bodies of notifications in Chinese and English.

Plain ``string.Template`` texts, one pair per kind and language: they are short, and a
translator can edit them without learning a template language. Every placeholder a
template uses is filled by the code that plans the notification (:mod:`.planning`);
a missing one is a bug, so ``substitute`` (not ``safe_substitute``) is used.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from string import Template

from crm_notifications.domain.kinds import Kind

LANGUAGES = ("zh-CN", "en")

_T: dict[Kind, dict[str, tuple[str, str]]] = {
    Kind.contract_instalment_overdue: {
        "zh-CN": (
            "回款逾期：$contract_number",
            "合同 $contract_number（客户「$customer_name」）的回款计划第 $instalment_no 期应于 $due_on 回款，"
            "已逾期 $days_overdue 天，尚欠 $outstanding。",
        ),
        "en": (
            "Payment overdue: $contract_number",
            'Instalment $instalment_no of contract $contract_number (customer "$customer_name") was due on '
            "$due_on and is $days_overdue day(s) overdue: $outstanding outstanding.",
        ),
    },
    Kind.task_reminder: {
        "zh-CN": ("待办提醒：$task_title", "您的待办「$task_title」将于 $due_at 到期。"),
        "en": ("Reminder: $task_title", 'Your task "$task_title" is due at $due_at.'),
    },
    Kind.task_overdue: {
        "zh-CN": ("待办已逾期：$task_title", "您的待办「$task_title」已于 $due_at 到期，尚未完成。"),
        "en": ("Overdue: $task_title", 'Your task "$task_title" was due at $due_at and is not done yet.'),
    },
    Kind.customer_assigned: {
        "zh-CN": ("新客户分配给您：$customer_name", "客户「$customer_name」已分配给您负责。"),
        "en": ("New customer for you: $customer_name", 'The customer "$customer_name" has been assigned to you.'),
    },
    Kind.customer_recycle_warning: {
        "zh-CN": (
            "客户即将回收至公海：$customer_name",
            "客户「$customer_name」将在 $days_left 天后（$recycle_at）回收至公海，请及时跟进。",
        ),
        "en": (
            "Customer returns to the pool soon: $customer_name",
            'The customer "$customer_name" returns to the public pool in $days_left day(s), on $recycle_at, '
            "unless you follow up.",
        ),
    },
    Kind.lead_recycle_warning: {
        "zh-CN": (
            "线索即将回收至线索池：$company_name",
            "线索「$company_name」将在 $days_left 天后（$recycle_at）回收至线索池，请及时跟进。",
        ),
        "en": (
            "Lead returns to the lead pool soon: $company_name",
            'The lead "$company_name" returns to the lead pool in $days_left day(s), on $recycle_at, '
            "unless you work it.",
        ),
    },
    Kind.customer_released: {
        "zh-CN": ("客户已回收至公海：$customer_name", "客户「$customer_name」已回收至公海（$reason），不再由您负责。"),
        "en": (
            "Customer returned to the pool: $customer_name",
            'The customer "$customer_name" went to the public pool ($reason) and is no longer yours.',
        ),
    },
    Kind.opportunity_assigned: {
        "zh-CN": ("新商机分配给您：$opportunity_name", "商机「$opportunity_name」（金额 $amount）已分配给您负责。"),
        "en": (
            "New opportunity for you: $opportunity_name",
            'The opportunity "$opportunity_name" ($amount) has been assigned to you.',
        ),
    },
    Kind.big_deal_won: {
        "zh-CN": ("大单赢单：$opportunity_name", "您部门的商机「$opportunity_name」已赢单，金额 $amount。"),
        "en": (
            "Big deal won: $opportunity_name",
            'The opportunity "$opportunity_name" in your department was won: $amount.',
        ),
    },
    Kind.feedback_assigned: {
        "zh-CN": (
            "${feedback_kind_zh}分配给您处理：$feedback_title",
            "$feedback_kind_zh「$feedback_title」（优先级 $priority）已分配给您处理。",
        ),
        "en": (
            "A $feedback_kind_en for you to handle: $feedback_title",
            'The $feedback_kind_en "$feedback_title" (priority $priority) has been assigned to you.',
        ),
    },
    Kind.webhook_disabled: {
        "zh-CN": (
            "Webhook 已停用：$url",
            "Webhook 订阅 $url 连续 $failures 次投递失败，已被停用。请检查接收端后重新启用，并重放死信投递。",
        ),
        "en": (
            "Webhook disabled: $url",
            "The webhook subscription to $url failed $failures times in a row and was disabled. Fix the receiver, "
            "enable it again and replay the dead deliveries.",
        ),
    },
    Kind.export_approval_requested: {
        "zh-CN": (
            "客户导出待审批：$requester_name，$rows 行",
            "$requester_name 申请导出 $rows 行客户数据（超过审批阈值 $threshold 行），请审批。",
        ),
        "en": (
            "Export awaiting approval: $requester_name, $rows rows",
            "$requester_name asked to export $rows customer rows (above the approval threshold of $threshold): "
            "approve or reject it.",
        ),
    },
    Kind.export_approved: {
        "zh-CN": (
            "客户导出已批准（$rows 行）",
            "您的客户导出申请已由 $approver_name 批准：$comment。请在 $valid_until_at 前下载。",
        ),
        "en": (
            "Export approved ($rows rows)",
            "Your customer export was approved by $approver_name: $comment. Download it before $valid_until_at.",
        ),
    },
    Kind.export_rejected: {
        "zh-CN": ("客户导出被拒绝（$rows 行）", "您的客户导出申请被 $approver_name 拒绝：$comment。"),
        "en": ("Export rejected ($rows rows)", "Your customer export was rejected by $approver_name: $comment."),
    },
    Kind.lead_assigned: {
        "zh-CN": ("新线索分配给您：$lead_name", "线索「$lead_name」已分配给您跟进。"),
        "en": ("New lead for you: $lead_name", 'The lead "$lead_name" has been assigned to you.'),
    },
    Kind.lead_conversion_failed: {
        "zh-CN": (
            "线索转化失败：$lead_name",
            "线索「$lead_name」未能转化（$reason），已恢复为合格状态，请修正后重试。",
        ),
        "en": (
            "Lead conversion failed: $lead_name",
            'The lead "$lead_name" could not be converted ($reason); it is qualified again: fix it and retry.',
        ),
    },
    Kind.ticket_escalated: {
        "zh-CN": (
            "工单即将超时：$ticket_number $subject",
            "工单 $ticket_number「$subject」（优先级 $priority_zh）的$target_zh时限为 $due_at，即将超时，已升级处理。",
        ),
        "en": (
            "Ticket about to breach its SLA: $ticket_number $subject",
            'The $target_en of ticket $ticket_number "$subject" (priority $priority) is due at $due_at '
            "and about to be missed: it was escalated.",
        ),
    },
    Kind.ticket_assigned: {
        "zh-CN": (
            "工单指派给您：$ticket_number $subject",
            "工单 $ticket_number「$subject」（优先级 $priority_zh）已指派给您，解决时限为 $due_at。",
        ),
        "en": (
            "Ticket assigned to you: $ticket_number $subject",
            'The ticket $ticket_number "$subject" (priority $priority) was assigned to you; '
            "its resolution is due at $due_at.",
        ),
    },
    Kind.ticket_sla_breached: {
        "zh-CN": (
            "工单已超时：$ticket_number $subject",
            "工单 $ticket_number「$subject」（优先级 $priority_zh）的$target_zh时限 $due_at 已过，未能按时完成。",
        ),
        "en": (
            "Ticket SLA missed: $ticket_number $subject",
            'The $target_en of ticket $ticket_number "$subject" (priority $priority) was due at $due_at '
            "and was missed.",
        ),
    },
    Kind.quotation_approval_requested: {
        "zh-CN": (
            "报价单待审批：$number",
            "$owner_name 提交的报价单 $number（客户：$customer_name，总额 $total）折扣超过审批阈值，请审批。",
        ),
        "en": (
            "Quotation awaiting approval: $number",
            "$owner_name submitted the quotation $number for $customer_name ($total): a discount is above the "
            "approval threshold. Approve or reject it.",
        ),
    },
    Kind.quotation_approved: {
        "zh-CN": (
            "报价单已批准：$number",
            "您的报价单 $number（客户：$customer_name，总额 $total）已由 $approver_name 批准：$comment。",
        ),
        "en": (
            "Quotation approved: $number",
            "Your quotation $number for $customer_name ($total) was approved by $approver_name: $comment.",
        ),
    },
    Kind.quotation_rejected: {
        "zh-CN": (
            "报价单被驳回：$number",
            "您的报价单 $number（客户：$customer_name，总额 $total）被 $approver_name 驳回：$comment。",
        ),
        "en": (
            "Quotation rejected: $number",
            "Your quotation $number for $customer_name ($total) was rejected by $approver_name: $comment.",
        ),
    },
}

_LINK_LABEL = {"zh-CN": "查看详情：", "en": "Open: "}
_FOOTER = {
    "zh-CN": "您收到这封邮件，是因为您在 CRM 的通知设置中开启了此类邮件。",
    "en": "You get this email because this kind of notification is set to email in your CRM preferences.",
}
_FEEDBACK_KIND = {
    "request": ("客户需求", "request"),
    "suggestion": ("客户建议", "suggestion"),
    "complaint": ("客户投诉", "complaint"),
}


_TICKET_TARGET = {"first_response": ("首次响应", "first response"), "resolution": ("解决", "resolution")}
_PRIORITY_ZH = {"urgent": "紧急", "high": "高", "normal": "普通", "low": "低"}


def ticket_params(target: str, priority: str) -> dict[str, str]:
    zh, en = _TICKET_TARGET.get(target, (target, target))
    return {"target_zh": zh, "target_en": en, "priority": priority, "priority_zh": _PRIORITY_ZH.get(priority, priority)}


def language_of(value: str | None, default: str = "zh-CN") -> str:
    return value if value in LANGUAGES else default


def feedback_kind_params(kind: str) -> dict[str, str]:
    zh, en = _FEEDBACK_KIND.get(kind, ("客户反馈", "feedback item"))
    return {"feedback_kind_zh": zh, "feedback_kind_en": en}


def render(kind: Kind, language: str, params: dict[str, str], zone: tzinfo = UTC) -> tuple[str, str]:
    """(title, body) of one notification in ``language``, moments (``*_at``) shown in ``zone``."""
    title, body = _T[kind][language_of(language)]
    shown = {k: local_time(v, zone) if k.endswith("_at") else v for k, v in params.items()}
    return Template(title).substitute(shown), Template(body).substitute(shown)


def local_time(value: str, zone: tzinfo) -> str:
    """``2026-12-01 17:30 (UTC+08:00)``: minutes in the reader's zone, with the offset so it is never ambiguous."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # already text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"


def render_email(title: str, body: str, language: str, link_url: str | None) -> str:
    """The plain-text email body: the notification, the link to the record, and why it came."""
    lang = language_of(language)
    parts = [body]
    if link_url:
        parts.append(f"{_LINK_LABEL[lang]}{link_url}")
    parts.append(f"-- \n{_FOOTER[lang]}")
    return "\n\n".join(parts) + "\n"
