"""The request shapes that are not JSON bodies: multipart forms, query strings, and the small
JSON bodies of the llama-server and vector-store extras. No I/O here.

The routes read multipart forms field by field (files stream in as parts); these models state
what those readers accept, for the OpenAPI description, and `make test`'s fuzzing checks that
the two agree (a form the description allows must not be refused as malformed).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from quart_schema.pydantic import File

from ..images.params import ImageRequest
from .params import LoraScale


class _Form(BaseModel):
    model_config = ConfigDict(extra="allow")


class TranscriptionForm(_Form):
    file: File
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "verbose_json", "srt", "vtt"] = "json"
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["segment", "word"]] | None = Field(
        None, alias="timestamp_granularities[]", description="needs response_format=verbose_json")
    stream: bool = Field(False, description="true works with response_format json or text")


class DetectLanguageForm(_Form):
    file: File


class ImageEditForm(ImageRequest):
    image: File
    mask: File | None = None


class ImageVariationForm(ImageRequest):
    image: File


class UploadForm(_Form):
    file: File
    purpose: str = "assistants"


class StoreFileForm(_Form):
    file: File
    attributes: str | None = Field(None, description="a JSON object of at most 16 keys")
    chunking_strategy: str | None = Field(None, description="a JSON chunking strategy")
    source_uri: str | None = None


class ChunkingStatic(BaseModel):
    max_chunk_size_tokens: int = Field(ge=16, le=4096)
    chunk_overlap_tokens: int = Field(0, ge=0, description="at most half of max_chunk_size_tokens")


class ChunkingStrategy(BaseModel):
    type: Literal["auto", "static"]
    static: ChunkingStatic | None = None


class StoreFileJson(BaseModel):
    """A file for a vector store: an upload's `file_id`, or `text` given directly."""

    model_config = ConfigDict(extra="allow")
    file_id: str | None = None
    text: str | None = None
    filename: str | None = None
    source_uri: str | None = None
    attributes: dict[str, str | int | float | bool] | None = Field(None, max_length=16)
    chunking_strategy: ChunkingStrategy | None = None


class UpdateStore(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(None, min_length=1, max_length=256)
    metadata: dict[str, str | int | float | bool] | None = Field(None, max_length=16)


class UpdateChat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, min_length=1, max_length=200, description="the chat's new title")
    keep_messages: int | None = Field(None, ge=0, description="keep the first N messages, drop the rest")


class SlotFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    filename: str | None = Field(None, description="a file name in --slot-save-path (save and restore)")


LoraScales = RootModel[list[LoraScale]]


# -- query strings ----------------------------------------------------------------------------

class SlotActionQuery(BaseModel):
    action: Literal["save", "restore", "erase"]


class ChatsQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, description="the next_cursor of the page before")
    after: str | None = Field(None, description="older name of cursor")
    q: str | None = Field(None, description="full-text search over message text")


class PageQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


class FilesQuery(BaseModel):
    purpose: str | None = None
    limit: int = Field(20, ge=1, le=100)

