"""A quotation as a PDF (reportlab), in Chinese or English.

Chinese text goes through reportlab's built-in CID font ``STSong-Light`` (``UnicodeCIDFont``: the
viewer supplies the glyphs, no font file ships); the number, amounts and codes are in Helvetica so
the PDF's text layer carries them as plain text.
"""

from __future__ import annotations

import io
from typing import Any, Literal

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

Document = dict[str, Any]
Lang = Literal["zh-CN", "en"]
CJK = "STSong-Light"

LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "报价单",
        "number": "编号",
        "revision": "版本",
        "customer": "客户",
        "valid_until": "有效期至",
        "currency": "币种",
        "status": "状态",
        "sku": "SKU",
        "product": "产品",
        "quantity": "数量",
        "unit_price": "单价",
        "discount": "折扣%",
        "amount": "金额",
        "subtotal": "小计",
        "discount_total": "折扣合计",
        "total": "总计",
        "notes": "备注",
    },
    "en": {
        "title": "Quotation",
        "number": "Number",
        "revision": "Version",
        "customer": "Customer",
        "valid_until": "Valid until",
        "currency": "Currency",
        "status": "Status",
        "sku": "SKU",
        "product": "Product",
        "quantity": "Qty",
        "unit_price": "Unit price",
        "discount": "Disc. %",
        "amount": "Amount",
        "subtotal": "Subtotal",
        "discount_total": "Discount",
        "total": "Total",
        "notes": "Notes",
    },
}

_registered = False


def _fonts() -> None:
    global _registered
    if not _registered:
        pdfmetrics.registerFont(UnicodeCIDFont(CJK))
        _registered = True


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(doc: Document, status: str, organisation: str, lang: Lang) -> bytes:
    """The quotation's current revision as PDF bytes."""
    _fonts()
    label = LABELS[lang]
    text = ParagraphStyle("text", fontName=CJK, fontSize=9, leading=12)
    heading = ParagraphStyle("heading", fontName=CJK, fontSize=16, leading=20)
    latin = ParagraphStyle("latin", fontName="Helvetica", fontSize=9, leading=12)

    def p(value: Any, style: ParagraphStyle = text) -> Paragraph:
        return Paragraph(_escape("" if value is None else str(value)), style)

    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"{label['title']} {doc['number']}",
    )
    story: list[Any] = [p(organisation, heading), p(label["title"], heading), Spacer(1, 4 * mm)]
    header = [
        [p(label["number"]), p(doc["number"], latin), p(label["revision"]), p(doc["revision"], latin)],
        [p(label["customer"]), p(doc.get("customer_name") or doc["customer_id"]), p(label["status"]), p(status, latin)],
        [p(label["valid_until"]), p(doc["valid_until"], latin), p(label["currency"]), p(doc["currency"], latin)],
    ]
    story += [Table(header, colWidths=[25 * mm, 65 * mm, 25 * mm, 65 * mm]), Spacer(1, 5 * mm)]
    rows: list[list[Any]] = [[p(label[k]) for k in ("sku", "product", "quantity", "unit_price", "discount", "amount")]]
    for line in doc["lines"]:
        rows.append(
            [
                p(line["sku"], latin),
                p(f"{line['name']} ({line['unit']})"),
                p(line["quantity"], latin),
                p(line["unit_price"], latin),
                p(line["discount_percent"], latin),
                p(line["amount"], latin),
            ]
        )
    for key in ("subtotal", "discount_total", "total"):
        rows.append(["", "", "", "", p(label[key]), p(doc[key], latin)])
    table = Table(rows, colWidths=[30 * mm, 60 * mm, 18 * mm, 27 * mm, 20 * mm, 27 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, len(doc["lines"])), 0.5, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story.append(table)
    if doc.get("notes"):
        story += [Spacer(1, 5 * mm), p(f"{label['notes']}: {doc['notes']}")]
    pdf.build(story)
    return buffer.getvalue()
