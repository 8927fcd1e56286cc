"""Operations tests run real stacks: the pipeline tests' fixtures."""

from tests.pipeline.conftest import fake_openai, make_stack

__all__ = ["fake_openai", "make_stack"]
